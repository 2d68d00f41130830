#!/usr/bin/env bash
# Builds test/k8s-validate (Kubernetes' own Go types, k8s.io/api and k8s.io/apimachinery, pinned in
# its go.mod/go.sum) into .tools/bin/k8s-validate; test/deploy-chart.test.ts pipes every
# `helm template` rendering through it. Rebuilds only when its sources change
# (scripts/build-go-test-tool.sh).
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/build-go-test-tool.sh" k8s-validate
