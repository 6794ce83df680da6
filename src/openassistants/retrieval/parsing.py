"""A file's bytes to plain text for file_search: documents (PDF, DOCX, HTML), data (JSON, CSV) and text.

Which parser runs is decided by the file name's extension; a name with no known extension is read as
text if its bytes look like text. Every failure is a ``ParseError`` whose ``code`` is the one a
``vector_store.file``'s ``last_error`` reports.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from docx.table import Table

ParseErrorCode = Literal["unsupported_file", "invalid_file"]

# Bytes of a text file that may be checked for binary content: enough to judge, cheap on any size.
_SNIFF_BYTES = 8192
# Share of control characters (other than whitespace) above which decoded bytes are taken for binary.
_MAX_CONTROL_SHARE = 0.05


class ParseError(Exception):
    """A file that yields no text: ``unsupported_file`` (a format we don't read) or ``invalid_file``."""

    def __init__(self, code: ParseErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ParseErrorCode = code
        self.message = message


def parse_document(data: bytes, filename: str) -> str:
    """The plain text of a file, chosen by its name's extension. Raises ``ParseError`` only."""
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    parser = _PARSERS.get(suffix)
    try:
        if parser is not None:
            text = parser(data)
        elif suffix in TEXT_SUFFIXES:
            text = _text(data)
        else:
            text = _unknown(data, suffix)
    except ParseError:
        raise
    except Exception as exc:  # a parser library's own errors, whatever they are, mean a broken file
        raise ParseError(
            "invalid_file", f"The file could not be parsed as {suffix or 'text'}: {exc}"
        ) from exc
    text = text.replace("\x00", "")
    if not text.strip():
        raise ParseError("invalid_file", "The file contains no text.")
    return text


def decode_text(data: bytes) -> str:
    """Bytes of a text file as a string: UTF-8 (with or without a BOM), UTF-16/32 with a BOM, else
    Windows-1252 (Latin-1 with printable characters where Latin-1 has controls), else Latin-1."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


# UTF-32 LE's BOM begins with UTF-16 LE's, so it is checked first.
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def _looks_binary(data: bytes) -> bool:
    head = data[:_SNIFF_BYTES]
    if any(head.startswith(bom) for bom, _ in _BOMS):
        return False
    if b"\x00" in head:
        return True
    try:
        sample = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # An error in the last 3 bytes may be a character cut by the sample's end, not a non-UTF-8 file.
        cut = exc.start >= len(head) - 3
        sample = head[: exc.start].decode("utf-8") if cut else decode_text(head)
    control = sum(1 for c in sample if (ord(c) < 32 and c not in "\t\n\r\f\v") or 0x7F <= ord(c) < 0xA0)
    return control > _MAX_CONTROL_SHARE * max(1, len(sample))


def _text(data: bytes) -> str:
    if _looks_binary(data):
        raise ParseError("invalid_file", "The file is not text.")
    return decode_text(data)


def _unknown(data: bytes, suffix: str) -> str:
    if _looks_binary(data):
        kind = f"'{suffix}' files" if suffix else "Files without an extension"
        raise ParseError("unsupported_file", f"{kind} are not supported for file_search.")
    return decode_text(data)


def _pdf(data: bytes) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not reader.decrypt(""):
        raise ParseError("invalid_file", "The PDF is encrypted.")
    return "\n\n".join(page.extract_text() or "" for page in reader.pages)


def _docx(data: bytes) -> str:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ParseError("invalid_file", "The file is not a DOCX document (not a zip archive).")
    document = docx.Document(io.BytesIO(data))
    blocks: list[str] = []
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            blocks.append(block.text)
        elif isinstance(block, Table):
            blocks.extend(_docx_table_rows(block))
    return "\n".join(blocks)


def _docx_table_rows(table: Table) -> list[str]:
    rows: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            if not cells or cell.text != cells[-1]:  # a merged cell repeats across the columns it spans
                cells.append(cell.text)
        rows.append(" | ".join(cells))
    return rows


def _html(data: bytes) -> str:
    from bs4 import BeautifulSoup

    # Bytes go in undecoded: BeautifulSoup honours a <meta charset> and BOMs before guessing.
    soup = BeautifulSoup(data, "lxml")
    for element in soup(["script", "style", "noscript", "template"]):
        element.decompose()
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    return "\n".join(line for line in lines if line)


def _json(data: bytes) -> str:
    try:
        value = json.loads(decode_text(data))
    except ValueError:
        return _text(data)  # JSON Lines, or JSON with comments: still useful as text
    return json.dumps(value, indent=2, ensure_ascii=False)


def _csv(data: bytes) -> str:
    text = _text(data)
    try:
        dialect: type[csv.Dialect] = csv.Sniffer().sniff(text[:_SNIFF_BYTES], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        return "\n".join(", ".join(row) for row in csv.reader(io.StringIO(text), dialect) if row)
    except csv.Error:  # a malformed or oversized field: the text as it is is still searchable
        return text


_PARSERS: dict[str, Callable[[bytes], str]] = {
    ".pdf": _pdf,
    ".docx": _docx,
    ".html": _html,
    ".htm": _html,
    ".json": _json,
    ".csv": _csv,
}

#: Extensions read as text as they are: prose, markup, configuration and source code.
# One string, not a list literal: 90 one-line entries would say less than these six lines.
TEXT_SUFFIXES = frozenset(
    """
    .txt .text .md .markdown .rst .adoc .org .tex .log
    .py .pyi .js .mjs .cjs .jsx .ts .tsx .java .kt .kts .scala .groovy .c .h .cc .cpp .cxx .hpp .hh .cs
    .go .rs .rb .php .pl .pm .swift .m .mm .r .jl .lua .dart .ex .exs .erl .hs .ml .clj .vb .fs .zig
    .sh .bash .zsh .fish .ps1 .bat .cmd .sql .graphql .proto
    .css .scss .sass .less .vue .svelte
    .yaml .yml .toml .ini .cfg .conf .env .properties .xml .svg .tsv .jsonl .ndjson .ipynb .diff .patch
    """.split()  # noqa: SIM905
)
