#!/usr/bin/env bash
# Installs the system packages the test suite needs, from Debian packages, when they are missing:
#   redis-server (package redis-server) and redis-cli (package redis-tools)
#   nginx (package nginx; Debian builds it with the auth_request module)
#   cc (package gcc), which builds the clock shim the Redis clock-skew tests and test-future.sh use
#   PostgreSQL (package postgresql: initdb and postgres, under /usr/lib/postgresql/<major>/bin),
#   which the spend ledger's tests start on loopback ports (test/helpers/postgres.ts)
#   the tz database files (package tzdata), where Go, and so time.format in both OPA and
#   Signalbox, reads zone abbreviations ("IST") from (test/builtins.test.ts)
#   chromium (package chromium), the headless browser test/console.test.ts drives with
#   playwright-core (which never downloads a browser of its own), and fonts for it to render
#   text with (package fonts-liberation)
# The Redis tests start real redis-server processes (test/helpers/redis.ts) and the gateway tests
# a real nginx (test/helpers/gateways.ts); they never skip, so a machine without them must either
# get them here or fail loudly. Installing the package does not start an nginx service in a
# container; the tests run their own nginx on loopback ports. Quick and silent apart from one
# line when everything is already on PATH, so it is cheap to run before every test run.
set -euo pipefail

log() { echo "install-test-deps: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# command -> Debian package that provides it.
declare -A package_for=(
  [redis-server]=redis-server
  [redis-cli]=redis-tools
  [nginx]=nginx
  [cc]=gcc
  [chromium]=chromium
)
commands=(redis-server redis-cli nginx cc chromium)

missing=()
for cmd in "${commands[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    missing+=("${package_for[$cmd]}")
  fi
done

if [ ! -f /usr/share/zoneinfo/Asia/Kolkata ]; then
  missing+=(tzdata)
fi

# Debian keeps PostgreSQL's server binaries off PATH, under their major version.
have_postgres() {
  command -v initdb >/dev/null 2>&1 && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
have_postgres || missing+=(postgresql)
# Without recommends Chromium brings no fonts, and the console's screenshots would show boxes.
if [ ! -d /usr/share/fonts/truetype/liberation ]; then
  missing+=(fonts-liberation)
fi

# nginx -V prints its build options on stderr; read them whole (no `| grep -q` under pipefail).
nginx_has_auth_request() {
  local build
  build="$(nginx -V 2>&1 || true)"
  [[ "$build" == *"--with-http_auth_request_module"* ]]
}

# Debian's chromium wrapper script prints a shell warning on some kernels; keep only the version line.
versions() { echo "$(redis-server --version); $(redis-cli --version); $(nginx -v 2>&1); $(chromium --version 2>/dev/null | grep -i chromium)"; }

if [ "${#missing[@]}" -eq 0 ]; then
  nginx_has_auth_request || die "$(command -v nginx) is built without the auth_request module; install Debian's nginx package"
  log "already installed: $(versions)"
  exit 0
fi

log "missing packages: ${missing[*]}"

if ! command -v apt-get >/dev/null 2>&1; then
  die "apt-get not found; install ${missing[*]} (Redis >= 7 with redis-server and redis-cli; nginx with the auth_request module) with your system's package manager"
fi

# CI runs as root; on a developer machine fall back to sudo rather than failing halfway.
as_root=()
sudo_note=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
    sudo_note="sudo "
  else
    die "not root and sudo is not available; run as root: apt-get install -y --no-install-recommends ${missing[*]}"
  fi
fi

# DEBIAN_FRONTEND goes through env so it survives sudo's environment reset: never stop on a
# debconf prompt in CI.
log "running: ${sudo_note}apt-get update"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q \
  || die "apt-get update failed (no network or broken sources?); cannot install ${missing[*]}"
log "running: ${sudo_note}apt-get install -y --no-install-recommends ${missing[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
  || die "apt-get install ${missing[*]} failed"

# Verify rather than trust the exit code: a package with another name or a broken PATH would
# otherwise only show up later as a confusing test failure.
for cmd in "${commands[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || die "$cmd is still not on PATH after installing ${missing[*]}"
done
nginx_has_auth_request || die "$(command -v nginx) is built without the auth_request module"
have_postgres || die "initdb is still not found after installing ${missing[*]}"
log "installed: $(versions)"
