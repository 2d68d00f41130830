#!/usr/bin/env bash
# Installs the pinned LiteLLM proxy into a Python virtualenv at .tools/litellm (git-ignored), when
# it is missing or at another version. Only the LiteLLM door's end-to-end test needs it
# (test/litellm.test.ts starts a real proxy); Signalbox itself never imports Python.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# A release with the Generic Guardrail API (guardrail: generic_guardrail_api, extra_headers) and
# the generic_api logging callback. Several later releases (1.103.11, 1.104.9, 1.106.10,
# 1.108.11, 1.109.1 checked) require certifi>=2026.10.19, which PyPI does not serve, so pip
# cannot resolve them. Bump
# deliberately: test/litellm.test.ts pins the request/response contract.
LITELLM_VERSION="${LITELLM_VERSION:-1.104.0}"
venv="$root/.tools/litellm"
python="${PYTHON:-python3}"

log() { echo "install-litellm: $*" >&2; }

# Ask the venv's own interpreter, reading the whole answer before comparing (no `| grep -q`
# under pipefail).
installed=""
if [ -x "$venv/bin/python" ] && [ -x "$venv/bin/litellm" ]; then
  installed="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null || true)"
fi
if [ "$installed" = "$LITELLM_VERSION" ]; then
  exit 0
fi

if ! command -v "$python" >/dev/null 2>&1; then
  log "Python 3.10+ ($python) is required to install LiteLLM ${LITELLM_VERSION}; install it or set PYTHON"
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  log "creating a virtualenv in ${venv#"$root"/}"
  "$python" -m venv "$venv"
fi
log "installing litellm[proxy]==${LITELLM_VERSION} (about 2-3 minutes on a clean virtualenv)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "litellm[proxy]==${LITELLM_VERSION}"
installed="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')"
if [ "$installed" != "$LITELLM_VERSION" ]; then
  log "ERROR: installed litellm ${installed}, expected ${LITELLM_VERSION}"
  exit 1
fi
log "installed litellm ${installed}"
