"""lock_thread_for_messages: messages.create's checks in one round trip on PostgreSQL

messages.create once took four round trips (BEGIN, the thread's lock, a conditional INSERT, COMMIT).
One statement cannot lock the thread and then check its runs by itself: in READ COMMITTED its snapshot
is taken before the lock is granted, so a run committed while it waited (or just before it locked)
would go unseen. A VOLATILE function's statements each take a snapshot of their own, so this one
checks the runs as of after the lock, and the INSERT that calls it (services/messages.py) needs no
transaction of its own: it commits by itself, the lock held until then.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

#: statuses.ACTIVE_STATUSES as they stood when this was written (as in 0010's index, whose predicate
#: this repeats so that the index answers it).
_ACTIVE = "status IN ('cancelling', 'in_progress', 'queued', 'requires_action')"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":  # SQLite's single writer needs no lock
        return
    op.execute(f"""
        CREATE FUNCTION lock_thread_for_messages(
            p_thread_id varchar, p_tenant_id varchar,
            OUT thread_found boolean, OUT active_run_id varchar, OUT last_created_at bigint
        ) LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            -- Held until the calling statement's transaction ends: runs (whose foreign key takes the
            -- thread's KEY SHARE lock) and other messages on the thread wait for it.
            PERFORM FROM threads WHERE id = p_thread_id AND tenant_id = p_tenant_id FOR UPDATE;
            thread_found := FOUND;
            IF NOT thread_found THEN
                RETURN;
            END IF;
            -- Statements of their own, so snapshots taken once the lock is held.
            SELECT id INTO active_run_id FROM runs WHERE thread_id = p_thread_id AND {_ACTIVE} LIMIT 1;
            SELECT created_at INTO last_created_at FROM messages
                WHERE thread_id = p_thread_id ORDER BY seq DESC LIMIT 1;
        END
        $$
    """)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION lock_thread_for_messages(varchar, varchar)")
