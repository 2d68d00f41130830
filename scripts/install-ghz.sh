#!/usr/bin/env bash
# Installs the pinned ghz (a gRPC load generator) into .tools/bin/ghz (git-ignored) with
# `go install`, when it is missing or at another version. Only the peer benchmark
# (npm run bench:peer) needs it: the same generator drives Signalbox and opa-envoy-plugin.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/go-install-tool.sh" ghz github.com/bojand/ghz/cmd/ghz "${GHZ_VERSION:-v0.121.0}"
