#!/usr/bin/env bash
# Installs the pinned vegeta (an HTTP load generator) into .tools/bin/vegeta (git-ignored) with
# `go install`, when it is missing or at another version. Only the peer benchmark's end-to-end
# part (npm run bench:peer) needs it. vegeta sends at a constant arrival rate (an open model: a
# slow answer does not delay the next request, so latency under a fixed rate is not
# under-reported the way a closed-loop generator's is), takes per-request headers and bodies
# from a JSON targets file, and reports exact percentiles as JSON.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/go-install-tool.sh" vegeta github.com/tsenart/vegeta/v12 "${VEGETA_VERSION:-v12.13.0}"
