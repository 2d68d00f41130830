#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): installs what the tests need, type-checks,
# then runs every test. Nothing is skipped for a missing tool: a missing tool is installed or
# the run fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-opa.sh
bash scripts/install-test-deps.sh
bash scripts/install-litellm.sh
bash scripts/install-caddy.sh
bash scripts/build-envoy-client.sh
bash scripts/install-envoy.sh >/dev/null
bash scripts/install-otelcol.sh
bash scripts/install-grpcurl.sh
bash scripts/build-clock-shim.sh
bash scripts/install-helm.sh
bash scripts/build-k8s-validate.sh
npx tsc --noEmit -p tsconfig.json
npx vitest run "$@"
