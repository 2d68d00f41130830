#!/usr/bin/env bash
# go-install-tool.sh NAME PACKAGE VERSION: installs a pinned Go command with `go install` into
# .tools/bin/NAME (git-ignored), when it is missing or was built at another version or with
# another toolchain. Commands built with `go install` seldom report their release, so a stamp
# beside the binary records what was installed. The install-<tool>.sh scripts call it.
set -euo pipefail
name="$1"
package="$2"
version="$3"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/.tools/bin"
stamp="$bin/$name.version"

log() { echo "install-$name: $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  log "Go is required to install $name $version (go install); install Go 1.23+ and retry"
  exit 1
fi
want="$version $(go version)"
if [ -x "$bin/$name" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
mkdir -p "$bin"
log "building $name $version with go install (the first run takes a minute or two)"
start=$SECONDS
GOBIN="$bin" CGO_ENABLED=0 go install -trimpath "$package@$version"
printf '%s\n' "$want" > "$stamp"
log "installed .tools/bin/$name $version in $((SECONDS - start))s"
