#!/usr/bin/env bash
# Builds test/k8s-validate (Kubernetes' own Go types, k8s.io/api and k8s.io/apimachinery, pinned in
# its go.mod/go.sum) into .tools/bin/k8s-validate (git-ignored). test/deploy-chart.test.ts pipes
# every `helm template` rendering through it. Idempotent as scripts/build-envoy-client.sh: rebuilds
# only when its sources, go.mod, go.sum or the Go version changed (a SHA-256 of them is kept
# beside the binary). The first build downloads the modules through the Go module proxy.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/test/k8s-validate"
bin="$root/.tools/bin"
out="$bin/k8s-validate"
stamp="$out.sha256"
if ! command -v go >/dev/null 2>&1; then
  echo "build-k8s-validate: Go is required to build test/k8s-validate; install Go and retry" >&2
  exit 1
fi
# Captured whole, never piped into an early-exiting reader (SIGPIPE under pipefail).
files="$(cd "$src" && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) | LC_ALL=C sort)"
hash="$(cd "$src" && { go version; for f in $files; do printf '%s\n' "$f"; cat "$f"; done; } | sha256sum)"
hash="${hash%% *}"
if [ -x "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
  exit 0
fi
mkdir -p "$bin"
echo "build-k8s-validate: building test/k8s-validate (k8s.io/api)" >&2
start=$SECONDS
(cd "$src" && go vet ./... && CGO_ENABLED=0 go build -mod=readonly -trimpath -o "$out.tmp" .)
mv -f "$out.tmp" "$out"
printf '%s\n' "$hash" > "$stamp"
echo "build-k8s-validate: built .tools/bin/k8s-validate in $((SECONDS - start))s" >&2
