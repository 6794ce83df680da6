"""Settings: every option the server reads, its default and what it does.

Values come from ``OPENASSISTANTS_*`` environment variables (or CLI flags, which win). Nothing else in the
package reads ``os.environ``; ``create_app(settings)`` receives a ``Settings`` and passes it down. Keys are
``SecretStr``, so no ``repr``, log line or dump of the settings shows them.
``python -m openassistants.config`` prints the settings table of docs/configuration.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: The database URLs the installed drivers serve; anything else is refused at start-up with a hint.
SUPPORTED_DATABASE_SCHEMES = ("postgresql+asyncpg", "sqlite+aiosqlite")
POSTGRES_URL_FORM = "postgresql+asyncpg://user:password@host:5432/database"
#: Python's levels, and uvicorn's ``trace``.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


class Settings(BaseSettings):
    # env_ignore_empty: `OPENASSISTANTS_X=` (as compose files and .env templates write) means the default.
    model_config = SettingsConfigDict(env_prefix="OPENASSISTANTS_", extra="ignore", env_ignore_empty=True)

    data_dir: Path = Field(
        Path("./openassistants-data"),
        description="Directory for the embedded SQLite database and file blobs.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy async URL; e.g. postgresql+asyncpg://user@host/db. "
        "Unset: SQLite in WAL mode under data_dir.",
    )
    database_pool_size: int = Field(
        10,
        ge=1,
        description="PostgreSQL connections each process opens at most (as it needs them) and keeps "
        "open; every process of a deployment shares the server's max_connections.",
    )
    database_read_pool_size: int = Field(
        8,
        ge=1,
        description="PostgreSQL connections each process opens at most (as it needs them) and keeps "
        "for reads of single statements (retrievals, lists, a run's context), besides "
        "database_pool_size's.",
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated API keys; each key is its own tenant. "
        "Empty: no auth, only allowed on a loopback bind.",
    )
    max_body_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1,
        description="Largest JSON request body accepted, in bytes (413 above).",
    )
    header_read_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A request's headers must arrive within this of its first byte (of the connection, "
        "for its first request); slower clients get 408 and the connection is closed.",
    )
    body_read_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="Longest pause between two chunks of a request body while the server reads it; "
        "then 408 and the connection is closed.",
    )
    log_level: str = Field("info", description="Log level of the server's own loggers.")
    access_log: bool = Field(True, description="Write one structured (JSON) line per request.")
    metrics_enabled: bool = Field(
        True, description="Serve Prometheus metrics at /metrics (no API key needed, like /healthz)."
    )

    # --- model upstream (upstream/chat.py) ---
    llm_base_url: str = Field(
        "http://127.0.0.1:11434/v1",
        description="OpenAI-compatible API root; runs POST {llm_base_url}/chat/completions.",
    )
    llm_api_key: SecretStr | None = Field(None, description="Bearer key sent to the model upstream.")
    llm_routes: str | None = Field(
        None,
        description='Per-model upstreams, as JSON or a path to a JSON file: {"gpt-4o": '
        '{"base_url": "http://vllm:8000/v1", "api_key": "...", "model": "served-name"}}. Keys may be '
        'patterns ("gpt-4*"; "*" replaces the default upstream): an exact name wins, then the longest '
        "matching pattern. `model` is the name sent upstream (default: the one asked for); without "
        "`api_key` none is sent. Checked at start-up.",
    )
    llm_connect_timeout_seconds: float = Field(10.0, gt=0, description="Connect timeout to the upstream.")
    llm_read_timeout_seconds: float = Field(
        120.0, gt=0, description="Longest silence allowed between two streamed chunks from the upstream."
    )
    llm_max_retries: int = Field(
        3, ge=0, description="Retries of an upstream 5xx/429/timeout before any token arrived."
    )
    llm_retry_backoff_seconds: float = Field(
        0.5, ge=0, description="First retry delay; doubled on each further retry."
    )

    # --- runs (services/runs.py, services/executor.py) ---
    run_expiry_seconds: int = Field(
        600,
        ge=1,
        description="A run not finished (e.g. waiting for tool outputs) this long after creation expires.",
    )
    default_context_window: int = Field(
        128_000, ge=1, description="Context window (tokens) assumed for models not in model_context_windows."
    )
    model_context_windows: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict,
        description='Context windows per model, as JSON: {"llama3.1:8b": 8192}.',
    )
    completion_reserve_tokens: int = Field(
        4096,
        ge=0,
        description="Tokens kept free for the reply when truncating a prompt to the context window.",
    )

    # --- files and vector stores (api/files.py, services/vector_stores.py, upstream/embeddings.py) ---
    max_upload_bytes: int = Field(
        512 * 1024 * 1024, ge=1, description="Largest file accepted by POST /v1/files, in bytes (413 above)."
    )
    embeddings_base_url: str | None = Field(
        None,
        description="OpenAI-compatible API root for embeddings (POST {base}/embeddings); unset: the "
        "offline local model shipped with the package.",
    )
    embeddings_api_key: SecretStr | None = Field(None, description="Bearer key for the embeddings upstream.")
    embeddings_model: str = Field(
        "text-embedding-3-small", description="Model name sent to the embeddings upstream."
    )

    # --- scale-out (services/executor.py, services/run_queue.py, events.py) ---
    execute_runs: bool = Field(
        True, description="Whether `serve` also executes runs; `worker` always does, and serves no API."
    )
    max_concurrent_runs: int = Field(500, ge=1, description="Runs one process executes at the same time.")
    worker_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="`worker` only: serve this process's Prometheus metrics (model upstream latency and "
        "errors, process CPU and memory) at http://{worker_metrics_host}:{port}/metrics. Unset: none.",
    )
    worker_metrics_host: str = Field("127.0.0.1", description="Where `worker_metrics_port` listens.")
    run_lease_seconds: float = Field(
        15.0,
        gt=0,
        description="A worker renews its claim on a run every third of this; a claim not renewed for "
        "this long is taken to belong to a dead worker, whose runs are then settled by another.",
    )
    ingest_lease_seconds: float = Field(
        15.0,
        gt=0,
        description="As `run_lease_seconds`, for a file being ingested into a vector store: a claim not "
        "renewed for this long is taken to belong to a dead process, and the file is ingested by another.",
    )
    queue_poll_seconds: float = Field(
        2.0, gt=0, description="Fallback check for queued runs, should a LISTEN/NOTIFY wake-up be lost."
    )
    event_retention_seconds: int = Field(
        86_400, ge=0, description="How long a run's stream events are kept for clients resuming a stream."
    )
    event_memory_mb: int = Field(
        32,
        ge=0,
        description="SQLite (events in memory): the ended runs' stream events kept for resumes hold at "
        "most this many MB in all; the oldest are forgotten first (and all after event_retention_seconds).",
    )
    shutdown_grace_seconds: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM, how long in-flight runs may take to finish before they are failed.",
    )
    ingest_shutdown_grace_seconds: float = Field(
        5.0,
        ge=0,
        description="On SIGTERM, how long files being ingested may take to finish; then their claims are "
        "given up, and another process ingests them.",
    )
    rate_limit_per_minute: int | None = Field(
        None,
        ge=1,
        description="Requests per minute per API key, as a token bucket in each API process (N processes "
        "allow N times this); above it, 429 rate_limit_exceeded with retry-after. Unset: no limit.",
    )

    # --- code interpreter (code_interpreter/) ---
    code_interpreter_timeout_seconds: float = Field(
        60.0, gt=0, description="Wall time one code_interpreter call may take; then its kernel is killed."
    )
    code_interpreter_memory_mb: int = Field(
        1024, ge=64, description="Address space of each kernel process (RLIMIT_AS), in MiB."
    )
    code_interpreter_cpu_seconds: int = Field(
        3600,
        ge=1,
        description="CPU seconds each kernel process may use in its life (RLIMIT_CPU); then it is killed "
        "and a new kernel starts on the next call.",
    )
    code_interpreter_idle_seconds: float = Field(
        3600.0,
        gt=0,
        description="A thread's kernel, its variables and its /mnt/data files are dropped after this long "
        "unused (the hosted tool: 1 hour).",
    )
    code_interpreter_max_output_bytes: int = Field(
        20_000, ge=1000, description="Output (stdout, stderr, traceback) of one call returned to the model."
    )
    code_interpreter_pool_size: int = Field(
        2, ge=0, description="Kernels kept started (numpy, pandas, matplotlib imported) for new threads."
    )
    code_interpreter_max_kernels: int = Field(
        32,
        ge=1,
        description="Kernels one process runs at once, pool included; past it the least recently used "
        "idle thread's kernel is stopped.",
    )
    code_interpreter_unsafe_no_sandbox: bool = Field(
        False,
        description="When bubblewrap is unavailable, run model code WITHOUT a sandbox (resource limits "
        "only: it can read the server's files and use the network). Never with untrusted users.",
    )
    code_interpreter_bwrap: str = Field(
        "bwrap", description="The bubblewrap executable: a path, or a name looked up on PATH."
    )
    code_interpreter_data_mb: int = Field(
        1024,
        ge=1,
        description="Size of each kernel's /mnt/data, in MiB: a tmpfs of this size (memory, used only as "
        "filled) when the server runs as root; otherwise unenforced beyond the 512 MiB per-file limit.",
    )
    code_interpreter_max_output_files: int = Field(
        50,
        ge=0,
        description="Files one code_interpreter call may turn into Files; more are left in /mnt/data.",
    )
    code_interpreter_max_output_mb: int = Field(
        512, ge=0, description="Total size of the Files one code_interpreter call may create, in MiB."
    )
    code_interpreter_tenant_output_files: int = Field(
        10_000,
        ge=0,
        description="assistants_output Files one tenant may hold; code_interpreter creates no more past it.",
    )
    code_interpreter_tenant_output_mb: int = Field(
        10_240, ge=0, description="Total size of the assistants_output Files one tenant may hold, in MiB."
    )
    code_interpreter_cgroup: str = Field(
        "",
        description="A cgroup v2 directory delegated to the server (memory, pids and cpu in its "
        "cgroup.subtree_control): each kernel gets a cgroup there limiting it as a whole. Unset: limits "
        "are per kernel process (RLIMIT_AS, RLIMIT_NPROC).",
    )

    @field_validator("model_context_windows", mode="before")
    @classmethod
    def _parse_windows(cls, value: object) -> object:
        if isinstance(value, str):
            import json

            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError:
                raise ValueError('expected a JSON object such as {"llama3.1:8b": 8192}') from None
        return value

    @field_validator("llm_routes")
    @classmethod
    def _check_routes(cls, value: str | None) -> str | None:
        from openassistants.upstream.routes import parse_routes  # the package imports this module

        parse_routes(value)  # ValueError: one line saying what is wrong
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        scheme, separator, _ = value.partition("://")
        if not separator:
            raise ValueError(f"expected a URL such as {POSTGRES_URL_FORM}, or unset for SQLite")
        scheme = scheme.lower()
        if scheme in SUPPORTED_DATABASE_SCHEMES:
            return value
        if scheme.split("+")[0] in ("postgresql", "postgres"):
            driver = scheme.partition("+")[2] or "psycopg"
            raise ValueError(
                f"the {driver} driver is not installed; write the URL as {POSTGRES_URL_FORM} (asyncpg)"
            )
        if scheme.split("+")[0] == "sqlite":
            raise ValueError(
                "for SQLite leave it unset (the database goes under OPENASSISTANTS_DATA_DIR), "
                "or write sqlite+aiosqlite:///path"
            )
        raise ValueError(f"{scheme}:// is not supported: use {POSTGRES_URL_FORM}, or unset for SQLite")

    @field_validator("llm_base_url", "embeddings_base_url")
    @classmethod
    def _check_base_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or (not value.strip() and info.field_name == "embeddings_base_url"):
            return None  # blank: the local embedder, as when unset
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
            usable = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
            parts.port  # noqa: B018 (raises on a port that is not a number)
        except ValueError:
            usable = False
        if not usable:
            raise ValueError("expected an http:// or https:// URL such as http://127.0.0.1:11434/v1")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
        return value.lower()

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'openassistants.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")


def settings_table() -> str:
    """The settings table of docs/configuration.md: each variable, its default and its description."""
    prefix = Settings.model_config["env_prefix"]
    rows = ["| variable | default | description |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{prefix}{name.upper()}` | {_default_text(field)} | {description} |")
    return "\n".join(rows) + "\n"


def _default_text(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None or value == [] or value == {}:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


if __name__ == "__main__":
    print(settings_table(), end="")
