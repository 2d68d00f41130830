#!/usr/bin/env bash
# Installs the pinned OPA CLI into .tools/bin (git-ignored) with `go install`, when it is missing
# or at another version. OPA is only needed to compile and unit-test policies; the service runs
# from the committed bundles without it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The pinned version lives in package.json ("signalbox.opaVersion") so the bundle revision and this script agree.
OPA_VERSION="${OPA_VERSION:-v$(node -p "require(process.argv[1]).signalbox.opaVersion" "$root/package.json")}"
bin="$root/.tools/bin"
opa="$bin/opa"
if [ -x "$opa" ] && "$opa" version 2>/dev/null | grep -q "^Version: ${OPA_VERSION#v}\$"; then
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "install-opa: Go is required to install OPA ${OPA_VERSION} (go install); install Go 1.23+ and retry" >&2
  exit 1
fi
mkdir -p "$bin"
echo "install-opa: building OPA ${OPA_VERSION} with go install (first run takes a few minutes)" >&2
GOBIN="$bin" CGO_ENABLED=0 go install "github.com/open-policy-agent/opa@${OPA_VERSION}"
"$opa" version | head -1 >&2
