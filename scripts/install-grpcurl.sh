#!/usr/bin/env bash
# Installs the pinned grpcurl (a command-line gRPC client) into .tools/bin/grpcurl (git-ignored)
# with `go install`, when it is missing or at another version. The reflection and quickstart
# tests (test/grpc-reflection.test.ts, test/quickstart.test.ts) call a real Signalbox with it,
# the way an operator would.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/go-install-tool.sh" grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl "${GRPCURL_VERSION:-v1.9.3}"
