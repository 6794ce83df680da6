"""Bad configuration, said in one line: what ``Settings`` refused, and ``OPENASSISTANTS_*`` variables
that name no setting.

Each refused value becomes ``OPENASSISTANTS_X=value: expected …``, naming the variable an operator sets
(a flag's value is reported under the variable it overrides). A secret's value is never shown, nor a
password inside a database URL.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import annotated_types
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo

from openassistants.config import Settings

PREFIX: str = Settings.model_config["env_prefix"] or ""
#: ``scheme://user:password@`` in a URL: the password is replaced before a URL is shown.
_URL_PASSWORD = re.compile(r"(://[^/@:]*:)[^@/]*@")


def variable(name: str) -> str:
    """The environment variable of a setting."""
    return f"{PREFIX}{name.upper()}"


def redact_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def is_settings_error(exc: ValidationError) -> bool:
    return exc.title == Settings.__name__


def settings_errors(exc: ValidationError) -> list[str]:
    """One line per refused setting."""
    lines = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else ""
        field = Settings.model_fields.get(name)
        if error["type"] == "value_error":
            reason = str(error["msg"]).removeprefix("Value error, ")
        elif field is not None:
            reason = f"expected {expected_form(field)}"
        else:
            reason = str(error["msg"])
        lines.append(f"{variable(name)}={shown_value(name, field, error.get('input'))}: {reason}")
    return lines


def shown_value(name: str, field: FieldInfo | None, value: Any) -> str:
    """The refused value as the operator wrote it, unless it is (or contains) a secret."""
    if field is not None and _mentions(field.annotation, SecretStr):
        return "(hidden)"
    text = str(value)
    if name == "database_url":
        text = redact_url(text)
    return repr(text)


#: How a setting's value is written, by its type (or, for ``dict[…]`` and ``list[…]``, its origin).
_FORMS: dict[Any, str] = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    Path: "a directory path",
    dict: "a JSON object",
    list: "a comma-separated list",
}


def expected_form(field: FieldInfo) -> str:
    """What a value of ``field`` looks like, from its type and bounds: ``an integer >= 1``."""
    annotation = field.annotation
    optional = _mentions(annotation, type(None))
    base = next((a for a in _members(annotation) if a is not type(None)), annotation)
    form = _FORMS.get(get_origin(base) or base, "text")
    bounds = " and ".join(b for b in map(_bound, field.metadata) if b)
    form = f"{form} {bounds}" if bounds else form
    return f"{form}, or unset" if optional else form


#: Each bound pydantic records from ``Field(ge=…)`` and the like: how it reads, and its attribute.
_BOUNDS = (
    (annotated_types.Ge, ">=", "ge"),
    (annotated_types.Gt, ">", "gt"),
    (annotated_types.Le, "<=", "le"),
    (annotated_types.Lt, "<", "lt"),
)


def _bound(item: object) -> str:
    for kind, sign, attribute in _BOUNDS:
        if isinstance(item, kind):
            return f"{sign} {getattr(item, attribute)}"
    return ""


def _members(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _mentions(annotation: Any, kind: type) -> bool:
    """Whether ``kind`` appears anywhere in ``annotation`` (``list[SecretStr] | None`` mentions SecretStr)."""
    if annotation is kind:
        return True
    return any(_mentions(arg, kind) for arg in get_args(annotation))


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each ``OPENASSISTANTS_*`` variable that names no setting (it would be ignored)."""
    known = [variable(name) for name in Settings.model_fields]
    warnings = []
    for name in sorted(environ):
        if not name.upper().startswith(PREFIX) or name.upper() in known:
            continue
        close = difflib.get_close_matches(name.upper(), known, n=1)
        hint = f"did you mean {close[0]}?" if close else "see docs/configuration.md"
        warnings.append(f"warning: {name} is not a setting and is ignored; {hint}")
    return warnings
