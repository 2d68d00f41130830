#!/usr/bin/env bash
# Installs the pinned Helm CLI into .tools/bin/helm (git-ignored) with `go install` from its Go
# module, when it is missing or at another version. test/deploy-chart.test.ts lints and renders
# deploy/helm/signalbox with it (no cluster is needed: `helm lint` and `helm template` are offline).
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/go-install-tool.sh" helm helm.sh/helm/v3/cmd/helm "${HELM_VERSION:-v3.22.0}"
