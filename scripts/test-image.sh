#!/usr/bin/env bash
# Builds the container image (scripts/build-image.sh) and proves it runs as promised: started with
# a read-only root filesystem, as a non-root user, with only /var/lib/signalbox writable (a
# volume), it reaches /ready, answers /health, denies a request on its embedded defaults (401),
# writes its audit trail on the volume, and that trail verifies. Kept out of `npm test`: it needs
# root and podman (CI containers seldom allow either); run it where they are:
#
#   sudo bash scripts/test-image.sh [TAG]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tag="${1:-localhost/signalbox:dev}"
bash scripts/build-image.sh "$tag"
# Same runtime flags as the build (see scripts/build-image.sh for why).
PODMAN_RUN_FLAGS=(--runtime runc --ulimit nofile=8192:8192 --ulimit nproc=4096:4096)

log() { echo "test-image: $*" >&2; }
fail() { log "FAIL: $*"; podman logs "$name" >&2 || true; exit 1; }

name="signalbox-image-test-$$"
volume="$name-data"
port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
cleanup() { podman rm -f "$name" >/dev/null 2>&1 || true; podman volume rm -f "$volume" >/dev/null 2>&1 || true; }
trap cleanup EXIT

podman volume create "$volume" >/dev/null
podman run "${PODMAN_RUN_FLAGS[@]}" -d --name "$name" --read-only --cap-drop ALL \
  --security-opt no-new-privileges -v "$volume:/var/lib/signalbox" -e SIGNALBOX_WORKERS=2 \
  -p "127.0.0.1:$port:8181" "$tag" >/dev/null

ready=""
for _ in $(seq 1 60); do
  if ready="$(curl -fsS "http://127.0.0.1:$port/ready" 2>/dev/null)"; then break; fi
  sleep 1
done
[ -n "$ready" ] || fail "/ready never answered 200"
log "/ready: $ready"
[ "$(curl -fsS "http://127.0.0.1:$port/health")" = '{"status":"ok"}' ] || fail "/health"

[ "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$name")" = true ] || fail "root filesystem is not read-only"
user="$(podman exec "$name" id -u)"
[ "$user" != 0 ] || fail "runs as root"
podman exec "$name" sh -c 'touch /opt/signalbox/x' 2>/dev/null && fail "the root filesystem took a write"

# Deny by default: no identity provider is configured, so Envoy's HTTP-mode door answers 401.
status="$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/authz/envoy/v1/chat/completions" \
  -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}')"
log "decision without a token: HTTP $status"
[ "$status" = 401 ] || fail "expected 401 for a request without identity, got $status"

sleep 1
podman exec "$name" sh -c 'ls /var/lib/signalbox/audit/' >&2
podman exec "$name" node /opt/signalbox/dist/bundle/signalbox.js audit verify /var/lib/signalbox/audit >&2 || fail "audit verify"

podman stop -t 15 "$name" >/dev/null
code="$(podman inspect --format '{{.State.ExitCode}}' "$name")"
[ "$code" = 0 ] || fail "exit code $code after SIGTERM"
log "ok: $tag runs read-only as uid $user, ready, denies by default, audit verified, stops cleanly"
