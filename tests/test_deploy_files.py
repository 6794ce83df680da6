"""The deployment files (Dockerfile, deploy/, docs/deployment.md) cannot drift silently from the code.

deploy/smoke.sh proves the image runs, by hand per release; these checks are cheap and static: the
compose topology, the image's pins against pyproject.toml, every OPENASSISTANTS_* variable named
anywhere in them being a real setting, the systemd unit keeping what bubblewrap needs, and the proxies'
body limits staying above the server's own.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from openassistants.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
LOCK = DEPLOY / "requirements.lock"
PREFIX = Settings.model_config["env_prefix"]
ENV_VAR = re.compile(rf"\b{PREFIX}[A-Z0-9_]+\b")
PIN = re.compile(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==([^\s;]+)$")


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _deployment_files() -> list[Path]:
    files = [DOCKERFILE, ROOT / ".dockerignore", ROOT / "docs" / "deployment.md"]
    return files + sorted(path for path in DEPLOY.iterdir() if path.is_file())


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = PIN.match(line.strip())
        assert match, f"deploy/requirements.lock: not an exact pin: {line!r}"
        pins[_normalized(match.group(1))] = match.group(2)
    return pins


def test_every_variable_named_in_the_deployment_files_is_a_setting() -> None:
    settings = {f"{PREFIX}{name.upper()}" for name in Settings.model_fields}
    unknown = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in _deployment_files()
        for name in ENV_VAR.findall(path.read_text())
        if name not in settings
    }
    assert sorted(unknown) == []


def test_the_lock_pins_every_dependency_as_pyproject_does() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = _lock()
    drifted = []
    for requirement in project["dependencies"]:
        match = PIN.match(requirement)
        assert match, f"pyproject.toml: dependency not pinned with ==: {requirement!r}"
        name, version = _normalized(match.group(1)), match.group(2)
        if lock.get(name) != version:
            drifted.append(f"{name}: pyproject {version}, lock {lock.get(name)}")
    assert drifted == [], "regenerate deploy/requirements.lock (how: its header)"
    # The build backend is pinned too (PIP_CONSTRAINT reaches pip's isolated build environment).
    for backend in ("setuptools", "wheel", "pip"):
        assert backend in lock


def test_the_dockerfile_installs_from_the_lock_as_a_non_root_user() -> None:
    text = DOCKERFILE.read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in text
    assert re.search(r"^FROM \$\{BASE_IMAGE\} AS build$", text, re.MULTILINE)
    assert "PIP_CONSTRAINT=/src/deploy/requirements.lock" in text
    assert "COPY deploy/requirements.lock" in text
    assert "bubblewrap" in text
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^VOLUME /data$", text, re.MULTILINE)
    assert f"{PREFIX}DATA_DIR=/data" in text
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", text, re.MULTILINE)
    assert '"serve", "--host", "0.0.0.0"' in text
    # Everything the build copies gets past .dockerignore.
    ignored = (ROOT / ".dockerignore").read_text()
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for source in copied.split():
            assert (ROOT / source).exists(), source
            assert f"!{source.rstrip('/')}" in ignored.replace("/\n", "\n"), source


def test_compose_runs_two_api_processes_and_a_worker_on_postgres_sharing_one_data_volume() -> None:
    compose = _compose()
    services = compose["services"]
    commands = {name: service.get("command", []) for name, service in services.items()}
    api = [name for name, command in commands.items() if command[:1] == ["serve"]]
    workers = [name for name, command in commands.items() if command == ["worker"]]
    assert len(api) == 2 and len(workers) == 1
    assert "postgres" in services
    data_mounts = set()
    for name in [*api, *workers]:
        service = services[name]
        url = service["environment"][f"{PREFIX}DATABASE_URL"]
        assert url.startswith("postgresql+asyncpg://") and "@postgres:" in url
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        data_mounts |= {mount for mount in service["volumes"] if mount.endswith(":/data")}
    assert len(data_mounts) == 1, data_mounts
    (volume,) = {mount.split(":")[0] for mount in data_mounts}
    assert volume in compose["volumes"], "the shared data directory must be a named volume"
    assert "proxy" in services["proxy"]["profiles"], "the reverse proxy is optional"


@pytest.mark.parametrize(
    "directive",
    [
        # Each makes bubblewrap fail in the unit (docs/deployment.md): namespaces, sethostname, /proc.
        "RestrictNamespaces",
        "ProtectHostname",
        "ProtectKernelTunables",
        "ProtectKernelLogs",
        "ProtectProc",
        "PrivateUsers",
    ],
)
def test_the_systemd_unit_does_not_set_what_breaks_bubblewrap(directive: str) -> None:
    unit = (DEPLOY / "openassistants.service").read_text()
    assert not re.search(rf"^{directive}=", unit, re.MULTILINE)


def test_the_systemd_unit_is_hardened_and_restarts() -> None:
    unit = (DEPLOY / "openassistants.service").read_text()
    for line in (
        "Restart=on-failure",
        "StateDirectory=openassistants",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "EnvironmentFile=/etc/openassistants/openassistants.env",
    ):
        assert re.search(rf"^{re.escape(line)}$", unit, re.MULTILINE), line
    assert re.search(r"^SystemCallFilter=.*@mount.*sethostname", unit, re.MULTILINE)
    assert re.search(r"^ExecStart=\S+/openassistants serve ", unit, re.MULTILINE)


def test_the_proxies_accept_the_largest_upload_the_server_does() -> None:
    largest = max(Settings().max_upload_bytes, Settings().max_body_bytes)
    nginx = re.search(r"client_max_body_size (\d+)m;", (DEPLOY / "nginx.conf").read_text())
    caddy = re.search(r"max_size (\d+)MiB", (DEPLOY / "Caddyfile").read_text())
    assert nginx and caddy
    for limit in (int(nginx.group(1)), int(caddy.group(1))):
        assert limit * 1024 * 1024 > largest, "the proxy would refuse what the server accepts"
    assert "proxy_buffering off;" in (DEPLOY / "nginx.conf").read_text()


def test_only_the_worker_loosens_the_engine_defaults_for_bubblewrap() -> None:
    services = _compose()["services"]
    assert {"seccomp=unconfined", "systempaths=unconfined"} <= set(services["worker"]["security_opt"])
    for api in ("api1", "api2"):
        assert "security_opt" not in services[api]
        assert services[api]["environment"][f"{PREFIX}EXECUTE_RUNS"] == "false"
