"""Bad configuration, as an operator meets it: the real command (``python -m openassistants …``) ends
with status 2 and one line naming the setting, never a traceback; a mistyped variable is named; the
command explains itself (``--help``, ``--version``)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from openassistants import __version__
from tests.processes import process_env
from tests.servers import free_port

#: Generous: the point is that the process ends by itself, not how fast (the machine may be loaded).
EXIT_WITHIN_SECONDS = 60


def run(args: list[str], tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = process_env(data_dir=str(tmp_path / "data"), **settings)
    return subprocess.run(
        [sys.executable, "-m", "openassistants", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=EXIT_WITHIN_SECONDS,
    )


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused configuration prints; asserts status 2 and nothing else on stderr."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == 2, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("database_url", "nonsense", ["OPENASSISTANTS_DATABASE_URL", "'nonsense'", "postgresql+asyncpg://"]),
        ("max_concurrent_runs", "lots", ["OPENASSISTANTS_MAX_CONCURRENT_RUNS", "'lots'", "an integer >= 1"]),
        ("max_concurrent_runs", "0", ["OPENASSISTANTS_MAX_CONCURRENT_RUNS", "'0'", ">= 1"]),
        ("llm_read_timeout_seconds", "soon", ["OPENASSISTANTS_LLM_READ_TIMEOUT_SECONDS", "a number > 0"]),
        ("access_log", "perhaps", ["OPENASSISTANTS_ACCESS_LOG", "'perhaps'", "true or false"]),
        ("log_level", "loud", ["OPENASSISTANTS_LOG_LEVEL", "'loud'", "debug"]),
        ("llm_base_url", "localhost:11434", ["OPENASSISTANTS_LLM_BASE_URL", "http://"]),
        ("model_context_windows", "{llama: 1", ["OPENASSISTANTS_MODEL_CONTEXT_WINDOWS", "JSON object"]),
        ("worker_metrics_port", "70000", ["OPENASSISTANTS_WORKER_METRICS_PORT", "<= 65535"]),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    tmp_path: Path, setting: str, value: str, expected: list[str]
) -> None:
    line = refusal(run(["serve", "--port", str(free_port())], tmp_path, **{setting: value}))
    for part in expected:
        assert part in line, line


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg2"])
def test_a_postgres_url_without_asyncpg_suggests_it_and_hides_the_password(
    tmp_path: Path, scheme: str
) -> None:
    url = f"{scheme}://app:s3cret-pw@127.0.0.1:5432/test"
    line = refusal(run(["serve"], tmp_path, database_url=url))
    assert "OPENASSISTANTS_DATABASE_URL" in line and "postgresql+asyncpg://" in line, line
    assert "s3cret-pw" not in line and "app:***@127.0.0.1" in line, line


def test_an_unsupported_database_is_named(tmp_path: Path) -> None:
    line = refusal(run(["serve"], tmp_path, database_url="mysql+aiomysql://root@127.0.0.1/app"))
    assert "mysql+aiomysql:// is not supported" in line, line


def test_a_missing_database_stops_start_up_with_its_own_message(tmp_path: Path, pg_url: str) -> None:
    missing = pg_url.rsplit("/", 1)[0] + "/openassistants_no_such_database"
    line = refusal(run(["serve", "--port", str(free_port())], tmp_path, database_url=missing))
    assert 'database "openassistants_no_such_database" does not exist' in line, line
    assert "OPENASSISTANTS_DATABASE_URL" in line, line


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_an_unreachable_database_stops_start_up(tmp_path: Path, command: str) -> None:
    closed = f"postgresql+asyncpg://app:s3cret-pw@127.0.0.1:{free_port()}/test"
    line = refusal(run([command], tmp_path, database_url=closed))
    assert "cannot use OPENASSISTANTS_DATABASE_URL" in line and "s3cret-pw" not in line, line


def test_an_unusable_data_dir_is_named(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file, not a directory")
    line = refusal(run(["serve", "--port", str(free_port())], tmp_path))
    assert "OPENASSISTANTS_DATA_DIR" in line, line


def test_every_command_validates_the_settings(tmp_path: Path) -> None:
    for args in (["worker"], ["backup", str(tmp_path / "backup")], ["restore", str(tmp_path / "backup")]):
        line = refusal(run(args, tmp_path, max_concurrent_runs="-3"))
        assert "OPENASSISTANTS_MAX_CONCURRENT_RUNS='-3'" in line, line


def test_a_port_out_of_range_is_refused(tmp_path: Path) -> None:
    line = refusal(run(["serve", "--port", "99999"], tmp_path))
    assert "--port" in line and "99999" in line, line


def test_a_mistyped_variable_is_named_with_the_closest_setting(tmp_path: Path) -> None:
    result = run(["--version"], tmp_path, max_concurent_runs="5")
    assert result.returncode == 0 and result.stdout.strip() == f"openassistants {__version__}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "OPENASSISTANTS_MAX_CONCURENT_RUNS" in lines[0], lines[0]
    assert "did you mean OPENASSISTANTS_MAX_CONCURRENT_RUNS?" in lines[0], lines[0]


def test_help_is_for_users(tmp_path: Path) -> None:
    top = run(["--help"], tmp_path)
    assert top.returncode == 0 and top.stderr == ""
    assert "openassistants serve" in top.stdout and "docs/configuration.md" in top.stdout
    assert "build Settings" not in top.stdout
    serve = run(["serve", "--help"], tmp_path)
    assert serve.returncode == 0
    flat = " ".join(serve.stdout.split())
    for name in ("OPENASSISTANTS_LLM_BASE_URL", "OPENASSISTANTS_API_KEYS", "OPENASSISTANTS_DATABASE_URL"):
        assert name in flat
    assert "docs/configuration.md" in flat


def test_an_empty_variable_means_the_default(tmp_path: Path) -> None:
    """``OPENASSISTANTS_X=`` (as compose files write) is accepted: the command gets past its settings."""
    line = refusal(
        run(
            ["backup", str(tmp_path / "b")], tmp_path, rate_limit_per_minute="", database_url="", log_level=""
        )
    )
    assert "no database at" in line, line


def test_a_port_in_use_is_refused_before_start_up(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = refusal(run(["serve", "--port", str(port)], tmp_path))
    assert f"--port {port}" in line and "in use" in line, line
