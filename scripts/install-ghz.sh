#!/usr/bin/env bash
# Installs the pinned ghz (a gRPC load generator) into .tools/bin/ghz (git-ignored) with
# `go install`, when it is missing or at another version. Only the peer benchmark
# (npm run bench:peer) needs it: the same generator drives Signalbox and opa-envoy-plugin.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GHZ_VERSION="${GHZ_VERSION:-v0.121.0}"
bin="$root/.tools/bin"
ghz="$bin/ghz"
stamp="$ghz.version"

log() { echo "install-ghz: $*" >&2; }

# ghz built with `go install` reports "dev" as its version, so a stamp beside the binary records
# what was installed (and with which toolchain).
if ! command -v go >/dev/null 2>&1; then
  log "Go is required to install ghz ${GHZ_VERSION} (go install); install Go 1.23+ and retry"
  exit 1
fi
want="${GHZ_VERSION} $(go version)"
if [ -x "$ghz" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
mkdir -p "$bin"
log "building ghz ${GHZ_VERSION} with go install (first run takes a minute or two)"
start=$SECONDS
GOBIN="$bin" CGO_ENABLED=0 go install -trimpath "github.com/bojand/ghz/cmd/ghz@${GHZ_VERSION}"
printf '%s\n' "$want" > "$stamp"
log "installed .tools/bin/ghz ${GHZ_VERSION} in $((SECONDS - start))s"
