"""The repository holds everything its tests read: nothing beside it is opened, by code or by tests."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.outside_reads import PARENT, ROOT, TEMP, OutsideRepositoryRead, is_outside_repository

# A path built to reach out of the repository: "../shared", or ROOT.parent / "something".
OUTWARD = re.compile(r"""\.\./(?:shared|spec)\b|\.parent\s*/\s*["']shared""")


def test_a_read_beside_the_repository_fails_the_test() -> None:
    with pytest.raises(OutsideRepositoryRead):
        open(Path(PARENT) / "shared" / "spec" / "openapi.yaml", "rb")  # noqa: SIM115
    if PARENT != TEMP:  # a clone in the temp folder lists that folder as every test's tmp_path does
        with pytest.raises(OutsideRepositoryRead):
            list(Path(PARENT).iterdir())


def test_reads_inside_the_repository_and_elsewhere_are_allowed() -> None:
    assert not is_outside_repository(Path(ROOT) / "spec" / "openai" / "openapi.yaml")
    assert not is_outside_repository("/usr/lib/os-release")
    assert not is_outside_repository(3)  # a file descriptor
    assert is_outside_repository(Path(ROOT) / ".." / "shared")
    # The suite's temporary folders are its own, even when the clone itself lies in the temp folder.
    assert not is_outside_repository(Path(TEMP) / "pytest-of-root" / "x" / "data")


def test_no_tracked_file_names_a_path_beside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "src", "tests", "bench", ".ci", "Makefile", "pyproject.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    offenders = []
    for name in tracked:
        path = Path(ROOT) / name
        if path.suffix in {".png", ".json"} or name == "tests/test_self_contained.py":
            continue
        text = path.read_text(errors="replace")
        offenders += [f"{name}: {m.group(0)}" for m in OUTWARD.finditer(text)]
    assert offenders == []


def test_the_vendored_openapi_document_is_present() -> None:
    spec = Path(ROOT) / "spec" / "openai" / "openapi.yaml"
    assert spec.stat().st_size > 1_000_000
    assert "license:" in spec.read_text()[:2000]
