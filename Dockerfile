# syntax=docker/dockerfile:1
# OpenAssistants server image: the API, the web console (/console, shipped in the package) and the
# code_interpreter sandbox (Debian's bubblewrap), running as an unprivileged user with its data in /data.
#
#   docker build -t openassistants .
#   docker run -p 8000:8000 -v oa-data:/data -e OPENASSISTANTS_API_KEYS=sk-... \
#       -e OPENASSISTANTS_LLM_BASE_URL=http://ollama:11434/v1 openassistants
#
# BASE_IMAGE: any Debian bookworm image with Python 3.11 and venv: the official python:3.11-slim-bookworm
# (default), or one made from Debian's packages where no registry can be reached (deploy/base-image.sh).
# A TLS-intercepting proxy's CA for pip can be given as a build secret (--secret id=pip_ca,src=FILE).
# code_interpreter needs user namespaces in the container: see docs/deployment.md.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CONSTRAINT=/src/deploy/requirements.lock
WORKDIR /src
COPY deploy/requirements.lock deploy/requirements.lock
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md LICENSE NOTICE ./
COPY src src
# Every package pinned by the lock; bytecode compiled now, since the sandbox mounts the venv read-only.
RUN --mount=type=secret,id=pip_ca,required=false \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && /opt/venv/bin/pip install --no-input pip \
    && /opt/venv/bin/pip install --no-input . \
    && /opt/venv/bin/pip uninstall --yes pip \
    && /opt/venv/bin/openassistants version

FROM ${BASE_IMAGE}
# bubblewrap: code_interpreter's sandbox. tini: PID 1 that forwards signals and reaps orphans (kernels).
# Debian's versions of bookworm (and its security updates), not pinned: old ones leave the mirror.
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap tini \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && useradd --system --no-log-init --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin openassistants \
    && install -d -o openassistants -g openassistants -m 0750 /data
# Not /opt/openassistants: the sandbox mounts its driver there, inside the read-only venv it would fail.
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    OPENASSISTANTS_DATA_DIR=/data
USER openassistants
WORKDIR /data
VOLUME /data
EXPOSE 8000
# Liveness only (never touches the database); orchestrators should route on /readyz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["tini", "--", "openassistants"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
