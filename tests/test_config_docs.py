"""Every setting is described, and docs/configuration.md lists each one as Settings defines it now."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from openassistants.config import Settings, settings_table

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
README = DOC.parent.parent / "README.md"
GENERATED = re.compile(r"this is stale\. -->\n(.*?)\n<!-- end of the generated table -->", re.DOTALL)


def _documented_table() -> str:
    match = GENERATED.search(DOC.read_text())
    assert match is not None, "docs/configuration.md lost the markers around its generated table"
    return match.group(1).strip() + "\n"


def test_every_setting_has_a_description() -> None:
    undescribed = [
        name for name, field in Settings.model_fields.items() if not (field.description or "").strip()
    ]
    assert undescribed == []


def test_configuration_doc_lists_every_setting_as_defined_now() -> None:
    documented = _documented_table()
    missing = [name for name in Settings.model_fields if f"`OPENASSISTANTS_{name.upper()}`" not in documented]
    assert missing == [], f"not in docs/configuration.md: {missing}"
    assert documented == settings_table(), (
        "docs/configuration.md is stale: paste the output of `python -m openassistants.config` "
        "between its markers"
    )


def test_the_table_is_printed_by_the_config_module() -> None:
    printed = subprocess.run(
        [sys.executable, "-W", "error", "-m", "openassistants.config"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert printed.stdout == settings_table()


def test_readme_links_the_configuration_doc() -> None:
    assert "(docs/configuration.md)" in README.read_text()
