#!/usr/bin/env bash
# Builds test/envoy-client (Envoy's generated Go types from go-control-plane, pinned in its
# go.mod/go.sum) into .tools/bin/envoy-client, running its own protocol tests (an in-process
# ext_proc server, a real HTTP upstream) first, so the client is proven before any Signalbox test
# trusts it. Rebuilds only when its sources change (scripts/build-go-test-tool.sh); the first build
# takes about a minute.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/build-go-test-tool.sh" envoy-client --with-tests
