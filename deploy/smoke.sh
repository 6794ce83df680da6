#!/bin/sh
# Release smoke test of the container image (by hand, per release; not part of `make test`):
# build the image unless it exists (REBUILD=1 forces it), then deploy/smoke.py: start-up time against
# the same server on this host, the sandbox with and without the options bubblewrap needs, the image's
# HEALTHCHECK, and an SDK flow (assistant, thread, message, streamed run, code_interpreter run) against
# the container; then deploy/smoke_compose.py brings up deploy/compose.yaml and runs a flow across it. Needs the dev virtualenv (.venv, `make install`) for the SDK and the scripted model.
#
#   deploy/smoke.sh                                   # podman, base python:3.11-slim-bookworm
#   BASE_IMAGE=localhost/openassistants-base:bookworm deploy/smoke.sh   # base from deploy/base-image.sh
#   ENGINE=docker deploy/smoke.sh
#   PIP_CA=/etc/ssl/certs/ca-certificates.crt deploy/smoke.sh   # pip behind a TLS-intercepting proxy
set -eu
cd "$(dirname "$0")/.."

ENGINE=${ENGINE:-podman}
IMAGE=${IMAGE:-localhost/openassistants:dev}
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim-bookworm}
export ENGINE IMAGE

if [ "${REBUILD:-0}" = 1 ] || ! "$ENGINE" image inspect "$IMAGE" >/dev/null 2>&1; then
    set -- --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE"
    # podman builds OCI images by default, which have no HEALTHCHECK: ask for Docker's format.
    [ "$ENGINE" = podman ] && set -- "$@" --format docker
    [ -n "${PIP_CA:-}" ] && set -- "$@" --secret "id=pip_ca,src=$PIP_CA"
    echo "building $IMAGE from $BASE_IMAGE"
    start=$(date +%s)
    "$ENGINE" build "$@" .
    echo "built in $(($(date +%s) - start)) s"
fi
.venv/bin/python -m deploy.smoke
# compose.yaml itself (COMPOSE="docker compose" for Docker; POSTGRES_IMAGE=postgres:16-bookworm where a
# registry is reachable, else deploy/postgres-standin is built). SKIP_COMPOSE=1 skips it.
[ "${SKIP_COMPOSE:-0}" = 1 ] || .venv/bin/python -m deploy.smoke_compose
