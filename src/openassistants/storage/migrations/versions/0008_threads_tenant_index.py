"""threads: an index for listing a tenant's threads in order (GET /v1/threads)

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_threads_tenant_seq", "threads", ["tenant_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_threads_tenant_seq", table_name="threads")
