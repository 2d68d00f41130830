#!/usr/bin/env bash
# Builds one of the project's own Go test programs, test/NAME (its modules pinned in its
# go.mod/go.sum), into .tools/bin/NAME (git-ignored):
#   bash scripts/build-go-test-tool.sh NAME [--with-tests]
# Idempotent: rebuilds only when the program's sources, go.mod, go.sum or the Go version changed
# since the last build (a SHA-256 of them is kept beside the binary). A rebuild first runs go vet,
# and with --with-tests the program's own Go tests. The first build downloads the modules through
# the Go module proxy.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
name="${1:?usage: build-go-test-tool.sh NAME [--with-tests]}"
with_tests="${2:-}"
src="$root/test/$name"
bin="$root/.tools/bin"
out="$bin/$name"
stamp="$out.sha256"
if [ ! -f "$src/go.mod" ]; then
  echo "build-go-test-tool: test/$name has no go.mod" >&2
  exit 1
fi
if ! command -v go >/dev/null 2>&1; then
  echo "build-go-test-tool: Go is required to build test/$name; install Go and retry" >&2
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
echo "build-go-test-tool: building test/$name" >&2
start=$SECONDS
(cd "$src" && go vet ./...) >&2
if [ "$with_tests" = "--with-tests" ]; then (cd "$src" && go test -count=1 ./...) >&2; fi
(cd "$src" && CGO_ENABLED=0 go build -mod=readonly -trimpath -o "$out.tmp" .)
mv -f "$out.tmp" "$out"
printf '%s\n' "$hash" > "$stamp"
echo "build-go-test-tool: built .tools/bin/$name in $((SECONDS - start))s" >&2
