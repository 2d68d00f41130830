#!/usr/bin/env bash
# Installs the pinned vegeta (an HTTP load generator) into .tools/bin/vegeta (git-ignored) with
# `go install`, when it is missing or at another version. Only the peer benchmark's end-to-end
# part (npm run bench:peer) needs it. vegeta sends at a constant arrival rate (an open model: a
# slow answer does not delay the next request, so latency under a fixed rate is not
# under-reported the way a closed-loop generator's is), takes per-request headers and bodies
# from a JSON targets file, and reports exact percentiles as JSON.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VEGETA_VERSION="${VEGETA_VERSION:-v12.13.0}"
bin="$root/.tools/bin"
vegeta="$bin/vegeta"
stamp="$vegeta.version"

log() { echo "install-vegeta: $*" >&2; }

# Built with `go install`, vegeta reports no release version of its own, so a stamp beside the
# binary records what was installed (and with which toolchain).
if ! command -v go >/dev/null 2>&1; then
  log "Go is required to install vegeta ${VEGETA_VERSION} (go install); install Go 1.23+ and retry"
  exit 1
fi
want="${VEGETA_VERSION} $(go version)"
if [ -x "$vegeta" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
mkdir -p "$bin"
log "building vegeta ${VEGETA_VERSION} with go install (first run takes a minute)"
start=$SECONDS
GOBIN="$bin" CGO_ENABLED=0 go install -trimpath "github.com/tsenart/vegeta/v12@${VEGETA_VERSION}"
printf '%s\n' "$want" > "$stamp"
log "installed .tools/bin/vegeta ${VEGETA_VERSION} in $((SECONDS - start))s"
