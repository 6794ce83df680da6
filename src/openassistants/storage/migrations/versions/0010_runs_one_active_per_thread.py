"""runs: at most one active run per thread, as a partial unique index

Run creation on PostgreSQL no longer holds the thread's lock across a check and an insert
(services/run_batches.py); the index is what refuses a second active run, whatever interleaves.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: statuses.ACTIVE_STATUSES as they stood when this was written (a migration must not move with them).
_ACTIVE = "status IN ('cancelling', 'in_progress', 'queued', 'requires_action')"


def upgrade() -> None:
    op.create_index(
        "ux_runs_thread_active",
        "runs",
        ["thread_id"],
        unique=True,
        postgresql_where=sa.text(_ACTIVE),
        sqlite_where=sa.text(_ACTIVE),
    )


def downgrade() -> None:
    op.drop_index("ux_runs_thread_active", table_name="runs")
