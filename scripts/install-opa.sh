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
# test/builtins-conformance.test.ts reads OPA's own test cases from the module source in the Go
# module cache: `go install` leaves it there, but an OPA binary copied into .tools does not.
ensure_module_source() {
  local cases
  cases="$(go env GOMODCACHE)/github.com/open-policy-agent/opa@${OPA_VERSION}/v1/test/cases/testdata/v1"
  if [ ! -d "$cases" ]; then go mod download "github.com/open-policy-agent/opa@${OPA_VERSION}"; fi
}
# Read the whole version output before matching: with pipefail, `opa version | grep -q` (or
# `| head`) fails when the reader exits early and opa dies of SIGPIPE (exit 141).
installed=""
if [ -x "$opa" ]; then installed="$("$opa" version 2>/dev/null || true)"; fi
if [[ "$installed" == *$'\n'"Version: ${OPA_VERSION#v}"$'\n'* || "$installed" == "Version: ${OPA_VERSION#v}"$'\n'* ]]; then
  if command -v go >/dev/null 2>&1; then ensure_module_source; fi
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "install-opa: Go is required to install OPA ${OPA_VERSION} (go install); install Go 1.23+ and retry" >&2
  exit 1
fi
mkdir -p "$bin"
echo "install-opa: building OPA ${OPA_VERSION} with go install (first run takes a few minutes)" >&2
GOBIN="$bin" CGO_ENABLED=0 go install "github.com/open-policy-agent/opa@${OPA_VERSION}"
ensure_module_source
version="$("$opa" version)"
echo "${version%%$'\n'*}" >&2
