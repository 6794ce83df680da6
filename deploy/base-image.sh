#!/bin/sh
# Build a local stand-in for python:3.11-slim-bookworm from Debian's own packages, for machines that
# cannot pull from an image registry: debootstrap a minimal bookworm with Debian's python3.11 and venv,
# and import it into podman (or docker) as localhost/openassistants-base:bookworm.
#
#   sudo deploy/base-image.sh [ENGINE]          # ENGINE: podman (default) or docker
#   podman build --build-arg BASE_IMAGE=localhost/openassistants-base:bookworm -t openassistants .
#
# Needs root (debootstrap chroots) and a reachable Debian mirror ($DEBIAN_MIRROR; unset: debootstrap's
# own default).
set -eu

ENGINE=${1:-podman}
TAG=${BASE_TAG:-localhost/openassistants-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-}
ROOTFS=$(mktemp -d /var/tmp/openassistants-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT

# minbase: essential packages and apt only (what debian:bookworm-slim holds); python3 is Debian's 3.11.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$ROOTFS" ${MIRROR:+"$MIRROR"}
# Same trimming as the official slim images: no apt lists, caches, docs or man pages.
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* \
    "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/log/*.log
tar --numeric-owner -C "$ROOTFS" -c . \
    | "$ENGINE" import --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' - "$TAG"
echo "imported $TAG"
