#!/usr/bin/env bash
# Builds Signalbox's container image (deploy/Containerfile) with podman, on a machine with no
# container registry: the base is assembled from Debian packages instead of pulled.
#
#   bash scripts/build-image.sh [TAG]      # default localhost/signalbox:dev
#
# 1. podman, buildah and debootstrap come from the distribution's packages when missing.
# 2. The base, localhost/signalbox-base:trixie, is a minimal Debian trixie made by debootstrap
#    with nodejs (Debian's 20.19; Signalbox needs 20.12+) and ca-certificates, imported as an
#    image. It is built once and reused; `podman rmi localhost/signalbox-base:trixie` rebuilds it.
#    With registry access, skip this and build on the official Node image (the Containerfile's
#    default BASE_IMAGE): podman build -f deploy/Containerfile -t signalbox .
# 3. The image itself: deploy/Containerfile, multi-stage, from the repository root. The build
#    stage installs Debian's npm into the base and runs npm ci (the npm registry must be reachable);
#    the host's CA bundle (CA_BUNDLE) is lent to npm ci as a build secret, so a registry reached
#    through a TLS-inspecting proxy the host trusts works too.
#
# Containers run with runc and lowered rlimits (PODMAN_RUN_FLAGS, shared with
# scripts/test-image.sh): on a host with hybrid cgroups crun refuses to start anything ("cgroups
# in hybrid mode not supported"), and without CAP_SYS_RESOURCE podman's default rlimits (above the
# host's) cannot be set.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tag="${1:-localhost/signalbox:dev}"
suite=trixie
base="localhost/signalbox-base:$suite"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

log() { echo "build-image: $*" >&2; }
PODMAN_RUN_FLAGS=(--runtime runc --ulimit nofile=8192:8192 --ulimit nproc=4096:4096)

missing=()
for cmd in podman buildah debootstrap runc; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { log "ERROR: ${missing[*]} missing; install them (apt-get install ${missing[*]}) or run as root"; exit 1; }
  log "installing ${missing[*]} from the distribution's packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
fi

if ! podman image exists "$base"; then
  [ "$(id -u)" = 0 ] || { log "ERROR: debootstrap needs root to assemble $base"; exit 1; }
  rootfs="$(mktemp -d /var/tmp/signalbox-base.XXXXXX)"
  trap 'rm -rf "$rootfs"' EXIT
  log "assembling $base from Debian $suite packages (debootstrap, about a minute)"
  debootstrap --variant=minbase --include=nodejs,ca-certificates "$suite" "$rootfs" "$mirror" >&2
  # What an image does not need: package caches and lists, logs, documentation.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
  node_version="$(chroot "$rootfs" node --version)"
  log "base has node $node_version"
  tar --numeric-owner -C "$rootfs" -c . | podman import \
    --change 'CMD ["node"]' --change 'ENV LANG=C.UTF-8' \
    --message "Debian $suite minbase + nodejs $node_version (debootstrap)" - "$base" >&2
  rm -rf "$rootfs"
  trap - EXIT
fi

log "building $tag on $base"
start=$SECONDS
podman build "${PODMAN_RUN_FLAGS[@]}" --format docker --ignorefile deploy/Containerfile.dockerignore \
  --secret "id=ca_bundle,src=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}" \
  --build-arg "BASE_IMAGE=$base" -f deploy/Containerfile -t "$tag" . >&2
log "built $tag in $((SECONDS - start))s ($(podman image inspect --format '{{.Size}}' "$tag") bytes)"
