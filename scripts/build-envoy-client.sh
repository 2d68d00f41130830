#!/usr/bin/env bash
# Builds test/envoy-client (Envoy's generated Go types from go-control-plane, pinned in its
# go.mod/go.sum) into .tools/bin/envoy-client (git-ignored). Idempotent: rebuilds only when the
# client's sources, go.mod, go.sum or the Go version changed since the last build (a SHA-256 of
# them is kept beside the binary); a rebuild first runs go vet and the client's Go tests. The first build downloads the modules through the Go module
# proxy and takes about a minute.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/test/envoy-client"
bin="$root/.tools/bin"
out="$bin/envoy-client"
stamp="$out.sha256"
if ! command -v go >/dev/null 2>&1; then
  echo "build-envoy-client: Go is required to build test/envoy-client; install Go and retry" >&2
  exit 1
fi
# Hash every file that affects the binary, in a stable order, plus the toolchain. The output of
# each command is captured whole (no `| head`/`| grep -q` under pipefail: an early-exiting reader
# would kill the writer with SIGPIPE and fail the script).
files="$(cd "$src" && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) | LC_ALL=C sort)"
hash="$(cd "$src" && { go version; for f in $files; do printf '%s\n' "$f"; cat "$f"; done; } | sha256sum)"
hash="${hash%% *}"
if [ -x "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
  exit 0
fi
mkdir -p "$bin"
echo "build-envoy-client: building test/envoy-client (go-control-plane)" >&2
start=$SECONDS
# The client's own protocol tests (an in-process ext_proc server, a real HTTP upstream) prove it
# before any Signalbox test trusts it; they run only when the sources changed, like the build.
(cd "$src" && go vet ./... && go test -count=1 ./...) >&2
(cd "$src" && CGO_ENABLED=0 go build -mod=readonly -trimpath -o "$out.tmp" .)
mv -f "$out.tmp" "$out"
printf '%s\n' "$hash" > "$stamp"
echo "build-envoy-client: built .tools/bin/envoy-client in $((SECONDS - start))s" >&2
