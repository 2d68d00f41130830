#!/usr/bin/env bash
# Builds the pinned opa-envoy-plugin (OPA with Envoy's ext_authz gRPC server built in) into
# .tools/bin/opa-envoy-plugin (git-ignored). Only the peer benchmark (npm run bench:peer) needs it:
# it is the engine Signalbox is measured against.
#
# `go install github.com/open-policy-agent/opa-envoy-plugin/cmd/opa-envoy-plugin@<tag>` is refused
# here for the module's version list (its tags carry an "-envoy" suffix), so the binary is built
# from a throwaway module: go mod init, go get the pinned tag, go build its
# cmd/opa-envoy-plugin. Idempotent: a stamp beside the binary records the version and the Go
# toolchain it was built with; it rebuilds only when either changed. The first build downloads
# the modules through the Go module proxy and takes a few minutes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The newest release the Go module proxy serves here. Bump deliberately: the peer benchmark's
# Rego (bench/peer/) is written for its envoy.authz input shape.
OPA_ENVOY_PLUGIN_VERSION="${OPA_ENVOY_PLUGIN_VERSION:-v1.15.2-envoy}"
module="github.com/open-policy-agent/opa-envoy-plugin"
bin="$root/.tools/bin"
out="$bin/opa-envoy-plugin"
stamp="$out.version"

log() { echo "install-opa-envoy-plugin: $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  log "Go is required to build opa-envoy-plugin ${OPA_ENVOY_PLUGIN_VERSION}; install Go 1.23+ and retry"
  exit 1
fi
want="${OPA_ENVOY_PLUGIN_VERSION} $(go version)"
if [ -x "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

mkdir -p "$bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log "building opa-envoy-plugin ${OPA_ENVOY_PLUGIN_VERSION} from a throwaway module (first run takes several minutes)"
start=$SECONDS
(
  cd "$work"
  go mod init signalbox.local/opa-envoy-plugin-build >/dev/null 2>&1
  # go get the command package (not just the module), so go.sum gets every module it imports.
  go get "${module}/cmd/opa-envoy-plugin@${OPA_ENVOY_PLUGIN_VERSION}"
  CGO_ENABLED=0 go build -trimpath -o "$out.tmp" "${module}/cmd/opa-envoy-plugin"
)
mv -f "$out.tmp" "$out"
printf '%s\n' "$want" > "$stamp"
log "built .tools/bin/opa-envoy-plugin ${OPA_ENVOY_PLUGIN_VERSION} in $((SECONDS - start))s"
