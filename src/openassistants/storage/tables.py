"""Table definitions. Every table carries ``tenant_id``; ``seq`` is the insertion order used for lists.

``seq`` (an autoincrementing integer) orders objects that share one ``created_at`` second stably, and
makes cursor pagination an index range scan.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

from openassistants.statuses import ACTIVE_STATUSES

#: A run is active in these statuses; a thread has at most one active run (the partial unique index
#: ``ux_runs_thread_active``, migration 0010, whose copy of this tests/test_migrations.py compares).
ACTIVE_RUN = "status IN (" + ", ".join(f"'{s.value}'" for s in sorted(ACTIVE_STATUSES)) + ")"

# BigInteger autoincrement is a plain INTEGER PRIMARY KEY (the rowid) on SQLite.
SeqType = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

assistants = Table(
    "assistants",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("tenant_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("name", Text),
    Column("description", Text),
    Column("model", Text, nullable=False),
    Column("instructions", Text),
    Column("tools", JSON, nullable=False),
    Column("tool_resources", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("temperature", Float),
    Column("top_p", Float),
    Column("response_format", JSON),
    Column("reasoning_effort", String(16)),
    Index("ix_assistants_tenant_seq", "tenant_id", "seq"),
)

threads = Table(
    "threads",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("tenant_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("tool_resources", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    # GET /v1/threads (the console's extension) pages a tenant's threads by seq.
    Index("ix_threads_tenant_seq", "tenant_id", "seq"),
)

messages = Table(
    "messages",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("tenant_id", String(64), nullable=False),
    Column(
        "thread_id",
        String(64),
        ForeignKey("threads.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("created_at", BigInteger, nullable=False),
    Column("role", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("content", JSON, nullable=False),
    Column("attachments", JSON),
    Column("metadata", JSON, nullable=False),
    Column("assistant_id", String(64)),
    Column("run_id", String(64)),
    Column("completed_at", BigInteger),
    Column("incomplete_at", BigInteger),
    Column("incomplete_details", JSON),
    Index("ix_messages_thread_seq", "thread_id", "seq"),
    Index("ix_messages_thread_run", "thread_id", "run_id"),
)

runs = Table(
    "runs",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("tenant_id", String(64), nullable=False),
    Column("thread_id", String(64), ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    Column("assistant_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("status", String(24), nullable=False),
    Column("model", Text, nullable=False),
    Column("instructions", Text, nullable=False),
    Column("additional_instructions", Text),
    Column("tools", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("temperature", Float),
    Column("top_p", Float),
    Column("max_prompt_tokens", Integer),
    Column("max_completion_tokens", Integer),
    Column("truncation_strategy", JSON, nullable=False),
    Column("tool_choice", JSON),
    Column("parallel_tool_calls", Boolean, nullable=False),
    Column("response_format", JSON),
    Column("reasoning_effort", String(16)),
    Column("required_action", JSON),
    Column("last_error", JSON),
    Column("incomplete_details", JSON),
    Column("usage", JSON),
    Column("started_at", BigInteger),
    Column("expires_at", BigInteger),
    Column("cancelled_at", BigInteger),
    Column("failed_at", BigInteger),
    Column("completed_at", BigInteger),
    Column("incomplete_at", BigInteger),
    # The executor holding the run, and until when (Unix ms) its claim stands without a heartbeat.
    Column("worker_id", String(64)),
    Column("lease_expires_at", BigInteger),
    Index("ix_runs_thread_seq", "thread_id", "seq"),
    Index("ix_runs_status", "status"),
    Index("ix_runs_queue", "status", "worker_id", "seq"),
    Index("ix_runs_lease", "lease_expires_at"),
    Index(
        "ux_runs_thread_active",
        "thread_id",
        unique=True,
        postgresql_where=text(ACTIVE_RUN),
        sqlite_where=text(ACTIVE_RUN),
    ),
)

run_steps = Table(
    "run_steps",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("tenant_id", String(64), nullable=False),
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("thread_id", String(64), nullable=False),
    Column("assistant_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("type", String(24), nullable=False),
    Column("status", String(24), nullable=False),
    Column("step_details", JSON, nullable=False),
    Column("last_error", JSON),
    Column("usage", JSON),
    Column("metadata", JSON, nullable=False),
    Column("expired_at", BigInteger),
    Column("cancelled_at", BigInteger),
    Column("failed_at", BigInteger),
    Column("completed_at", BigInteger),
    Index("ix_run_steps_run_seq", "run_id", "seq"),
)

# Every stream event of every run, in publication order: the durable log that lets a client stream a
# run executed by another process, and resume after the last event id it saw.
run_events = Table(
    "run_events",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("data", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_run_events_run_id", "run_id", "id"),
    Index("ix_run_events_created_at", "created_at"),
)

files = Table(
    "files",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("tenant_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("filename", Text, nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_details", Text),
    Column("expires_at", BigInteger),
    Index("ix_files_tenant_seq", "tenant_id", "seq"),
)

vector_stores = Table(
    "vector_stores",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("tenant_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("name", Text),
    Column("description", Text),
    Column("metadata", JSON, nullable=False),
    Column("expires_after", JSON),
    Column("expires_at", BigInteger),
    Column("last_active_at", BigInteger),
    # Bumped in every transaction that adds or removes the store's chunks: search's cache key.
    Column("chunks_version", BigInteger, nullable=False, server_default="0"),
    Index("ix_vector_stores_tenant_seq", "tenant_id", "seq"),
)

# A file's membership of a vector store; the wire object's id is the file's id.
vector_store_files = Table(
    "vector_store_files",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("vector_store_id", String(64), nullable=False),
    Column("batch_id", String(64)),
    Column("created_at", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("last_error", JSON),
    Column("chunking_strategy", JSON, nullable=False),
    Column("attributes", JSON),
    Column("usage_bytes", BigInteger, nullable=False),
    # The process ingesting the file, and until when (Unix ms) its claim stands (as for runs).
    Column("worker_id", String(64)),
    Column("lease_expires_at", BigInteger),
    Index("ux_vector_store_files_store_file", "vector_store_id", "id", unique=True),
    Index("ix_vector_store_files_queue", "status", "worker_id", "seq"),
    Index("ix_vector_store_files_store_seq", "vector_store_id", "seq"),
    Index("ix_vector_store_files_file", "id"),
    Index("ix_vector_store_files_batch", "batch_id"),
)

file_batches = Table(
    "file_batches",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("tenant_id", String(64), nullable=False),
    Column("vector_store_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("cancelled", Boolean, nullable=False),
)

# Searchable pieces of a file in one vector store. Lexical search uses the database's full-text
# index (an FTS5 table on SQLite, a tsvector column with a GIN index on PostgreSQL), created in the
# migration since SQLAlchemy has no portable type for either; dense search uses ``embedding``
# (float32, L2-normalized).
chunks = Table(
    "chunks",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("vector_store_id", String(64), nullable=False),
    Column("file_id", String(64), nullable=False),
    Column("chunk_index", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("tokens", Integer, nullable=False),
    Column("embedding", LargeBinary, nullable=False),
    Index("ix_chunks_store_file", "vector_store_id", "file_id"),
    Index("ix_chunks_file", "file_id"),
)

# Positions of deleted objects, so that a list cursor naming one still works: paging through a list
# while deleting its items (a common SDK loop) must not fail on the next page.
deleted_cursors = Table(
    "deleted_cursors",
    metadata,
    Column("table_name", String(32), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("deleted_at", BigInteger, nullable=False),
)

# A run made through the Responses API (its id is the run's with ``resp_`` for ``run_``): what the
# request said that a run has no column for, and where its items sit among the thread's messages.
responses = Table(
    "responses",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("tenant_id", String(64), nullable=False),
    Column("thread_id", String(64), nullable=False),
    Column("previous_response_id", String(64)),
    # Whether the thread is the client's conversation (else one made for this chain of responses).
    Column("conversation", Boolean, nullable=False),
    Column("store", Boolean, nullable=False),
    Column("background", Boolean, nullable=False),
    # The request's echoed fields (text, tools as given, tool_choice, truncation, user…).
    Column("request", JSON, nullable=False),
    Column("input_items", JSON, nullable=False),
    # The seq of the thread's newest message when the response started: its output items follow it.
    Column("anchor_seq", BigInteger, nullable=False),
    # A response continuing a chain (previous_response_id, no conversation) has a thread of its own;
    # these are the threads of the responses before it, oldest first: its history.
    Column("chain_thread_ids", JSON, nullable=False),
    Index("ix_responses_thread_seq", "thread_id", "seq"),
)
