#!/usr/bin/env bash
# Installs the pinned Caddy into .tools/bin (git-ignored) with `go install`, when it is missing or
# at another version. Caddy is only needed by the gateway tests (test/gateways-nginx-caddy.test.ts),
# which run the real Caddy with examples/caddy/Caddyfile in front of a fake LLM upstream.
# The pin must be Caddy 2.11 or later: from 2.11, forward_auth's copy_headers deletes a copied
# header the auth response does not carry, which is what strips the caller's Authorization.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CADDY_VERSION="${CADDY_VERSION:-v2.11.9}"
bin="$root/.tools/bin"
caddy="$bin/caddy"
# Read the whole build-info output before matching: with pipefail, `caddy build-info | grep -q`
# fails when grep exits early and caddy dies of SIGPIPE.
installed=""
if [ -x "$caddy" ]; then installed="$("$caddy" build-info 2>/dev/null || true)"; fi
if [[ "$installed" == *$'\n'"mod"$'\t'"github.com/caddyserver/caddy/v2"$'\t'"${CADDY_VERSION}"$'\t'* ]]; then
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "install-caddy: Go is required to install Caddy ${CADDY_VERSION} (go install); install Go 1.26+ (Caddy v2.11 requires it) and retry" >&2
  exit 1
fi
mkdir -p "$bin"
echo "install-caddy: building Caddy ${CADDY_VERSION} with go install (first run takes a few minutes)" >&2
GOBIN="$bin" CGO_ENABLED=0 go install "github.com/caddyserver/caddy/v2/cmd/caddy@${CADDY_VERSION}"
installed="$("$caddy" build-info)"
if [[ "$installed" != *$'\n'"mod"$'\t'"github.com/caddyserver/caddy/v2"$'\t'"${CADDY_VERSION}"$'\t'* ]]; then
  echo "install-caddy: $caddy does not report Caddy ${CADDY_VERSION} after installing it" >&2
  exit 1
fi
echo "install-caddy: installed Caddy ${CADDY_VERSION} in $bin" >&2
