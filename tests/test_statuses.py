"""The status definitions' own promises (statuses.py): what the rest of the code relies on."""

from __future__ import annotations

from enum import StrEnum

import pytest

from openassistants import run_events, statuses
from openassistants.statuses import ALLOWED, TERMINAL_STATUSES, RunStatus, check_moves

ENUMS = (
    statuses.RunStatus,
    statuses.StepStatus,
    statuses.MessageStatus,
    statuses.UploadStatus,
    statuses.FileStatus,
    statuses.BatchStatus,
    statuses.VectorStoreStatus,
)


@pytest.mark.parametrize("enum", ENUMS, ids=lambda enum: enum.__name__)
def test_a_member_is_its_stored_string(enum: type[StrEnum]) -> None:
    """Names equal values, so that sets and dicts keyed by members find the strings the database
    holds (an Enum member hashes as its name)."""
    for member in enum:
        assert member.name == member.value
        assert hash(member) == hash(member.value)
        assert member.value in {member} and {member: 1}[member.value] == 1


def test_terminal_statuses_allow_no_move_and_every_other_has_one() -> None:
    assert {
        RunStatus.cancelled,
        RunStatus.failed,
        RunStatus.completed,
        RunStatus.incomplete,
        RunStatus.expired,
    } == TERMINAL_STATUSES
    assert all(ALLOWED[status] for status in RunStatus if status not in TERMINAL_STATUSES)


def test_a_move_the_table_does_not_allow_is_refused() -> None:
    assert check_moves({RunStatus.queued}, RunStatus.in_progress) is RunStatus.in_progress
    with pytest.raises(ValueError, match="illegal run transition"):
        check_moves({RunStatus.queued, RunStatus.requires_action}, RunStatus.in_progress)


def test_every_run_status_has_its_event() -> None:
    assert run_events.RUN_MOVED[RunStatus.requires_action] == "thread.run.requires_action"
    assert set(run_events.RUN_MOVED) == set(RunStatus)
