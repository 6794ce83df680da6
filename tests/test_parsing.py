"""Parsing files to text (pure; no server): documents made here with real libraries, text encodings, and
broken, binary and empty files."""

from __future__ import annotations

import io
import json
import zipfile

import docx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openassistants.retrieval.parsing import ParseError, parse_document


def make_pdf(pages: list[str]) -> bytes:
    """A minimal PDF (1.4) with one line of Helvetica text per page, written object by object."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def make_docx() -> bytes:
    document = docx.Document()
    document.add_heading("Quarterly report", level=1)
    document.add_paragraph("Revenue grew in every region.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Region", "Revenue"
    table.cell(1, 0).text, table.cell(1, 1).text = "North", "120"
    document.add_paragraph("Closing remarks after the table.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def parse_error(data: bytes, filename: str) -> ParseError:
    with pytest.raises(ParseError) as raised:
        parse_document(data, filename)
    return raised.value


# --- documents ---


def test_pdf_pages_are_extracted_in_order() -> None:
    text = parse_document(make_pdf(["Hello from page one.", "And (page) two."]), "report.pdf")
    assert "Hello from page one." in text
    assert "And (page) two." in text
    assert text.index("page one") < text.index("two")


def test_pdf_extension_is_case_insensitive() -> None:
    assert "Shouting" in parse_document(make_pdf(["Shouting"]), "REPORT.PDF")


def test_docx_paragraphs_and_tables_in_document_order() -> None:
    text = parse_document(make_docx(), "report.docx")
    lines = text.splitlines()
    assert lines == [
        "Quarterly report",
        "Revenue grew in every region.",
        "Region | Revenue",
        "North | 120",
        "Closing remarks after the table.",
    ]


def test_html_keeps_text_and_drops_scripts_and_styles() -> None:
    html = b"""<!doctype html><html><head><title>Page title</title>
    <style>body { color: red }</style><script>var secret = "do not index";</script></head>
    <body><h1>Heading</h1><p>First <b>bold</b> paragraph.</p><noscript>enable js</noscript>
    <ul><li>one</li><li>two</li></ul></body></html>"""
    text = parse_document(html, "page.html")
    assert "Page title" in text
    assert "Heading" in text
    assert "bold" in text
    assert "paragraph." in text
    assert "two" in text
    assert "secret" not in text
    assert "color" not in text
    assert "enable js" not in text


def test_html_honours_its_declared_charset() -> None:
    html = '<html><head><meta charset="iso-8859-1"></head><body>Caf\xe9 cr\xe8me</body></html>'
    assert "Café crème" in parse_document(html.encode("latin-1"), "menu.htm")


def test_json_is_pretty_printed() -> None:
    text = parse_document(b'{"name":"Ada","langs":["en","fr"],"n\\u00e9":1}', "person.json")
    assert json.loads(text) == {"name": "Ada", "langs": ["en", "fr"], "né": 1}
    assert '\n  "name": "Ada",' in text
    assert '"né": 1' in text


def test_json_lines_are_read_as_text() -> None:
    data = b'{"a": 1}\n{"a": 2}\n'
    assert parse_document(data, "events.json") == data.decode()


def test_csv_rows_become_lines() -> None:
    assert parse_document(b'name,age\r\nAlice,30\r\n"Bob, Jr.",41\r\n', "people.csv") == (
        "name, age\nAlice, 30\nBob, Jr., 41"
    )
    assert parse_document(b"city;country\nParis;France\nLyon;France\n", "cities.csv") == (
        "city, country\nParis, France\nLyon, France"
    )


@pytest.mark.parametrize(
    "filename",
    ["main.py", "app.ts", "Main.java", "lib.rs", "main.go", "x.c", "x.h", "x.cpp", "run.sh", "q.sql",
     "conf.yaml", "conf.yml", "pyproject.toml", "site.css", "notes.md", "readme.txt", "feed.xml"],
)  # fmt: skip
def test_code_and_text_files_are_read_as_they_are(filename: str) -> None:
    source = "def greet(name):\n    return f'hello {name}'  # ünïcode\n"
    assert parse_document(source.encode(), filename) == source


# --- encodings ---


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("naïve café".encode(), "naïve café"),
        (b"\xef\xbb\xbfwith BOM", "with BOM"),
        ("\ufeffUTF-16 LE ✓".encode("utf-16-le"), "UTF-16 LE ✓"),
        ("\ufeffUTF-16 BE ✓".encode("utf-16-be"), "UTF-16 BE ✓"),
        ("UTF-16 default".encode("utf-16"), "UTF-16 default"),
        ("UTF-32 😀".encode("utf-32"), "UTF-32 😀"),
        ("Latin-1 café".encode("latin-1"), "Latin-1 café"),
        ("Windows “smart” quotes \u2013 €5".encode("cp1252"), "Windows “smart” quotes \u2013 €5"),
        # 0x81 is not Windows-1252: Latin-1, where it is a (rare, tolerated) control character.
        (
            b"Latin-1, with a stray \x81 in a longer line: \xe9t\xe9",
            "Latin-1, with a stray \x81 in a longer line: été",
        ),
    ],
)
def test_text_encodings(data: bytes, expected: str) -> None:
    assert parse_document(data, "notes.txt") == expected


# --- failures ---


@pytest.mark.parametrize("filename", ["report.pdf", "report.docx"])
@pytest.mark.parametrize(
    "data", [b"", b"not a document at all", b"%PDF-1.4\n%garbage\x00\x01", b"PK\x03\x04junk"]
)
def test_corrupt_documents_are_invalid(filename: str, data: bytes) -> None:
    assert parse_error(data, filename).code == "invalid_file"


def test_a_truncated_pdf_is_invalid_or_still_read() -> None:
    pdf = make_pdf(["Some text that is long enough to matter."])
    # pypdf recovers what it can from a cut file (its xref can be rebuilt); cut inside the header it can't.
    assert parse_error(pdf[:20], "cut.pdf").code == "invalid_file"


def test_a_zip_that_is_not_a_docx_is_invalid() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hello")
    error = parse_error(buffer.getvalue(), "fake.docx")
    assert error.code == "invalid_file"
    assert error.message


@pytest.mark.parametrize("filename", ["blob.bin", "image.png", "archive", "sheet.xlsx", "model.onnx"])
def test_binary_files_of_unknown_kinds_are_unsupported(filename: str) -> None:
    data = bytes(range(256)) * 8
    error = parse_error(data, filename)
    assert error.code == "unsupported_file"
    assert str(error) == error.message


def test_binary_content_in_a_text_file_is_invalid() -> None:
    assert parse_error(b"\x00\x01\x02\x03binary\xff\xfe" * 10, "notes.txt").code == "invalid_file"


def test_unknown_extensions_with_text_are_read() -> None:
    assert parse_document(b"plain words in an odd file", "data.weird") == "plain words in an odd file"
    assert parse_document(b"no extension at all", "LICENSE") == "no extension at all"


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"", "empty.txt"),
        (b"   \n\t\n", "blank.md"),
        (b"\xef\xbb\xbf", "bom-only.txt"),
        (b"<html><script>only()</script></html>", "scripts.html"),
        (b"", "nothing.csv"),
        (make_pdf([""]), "blank.pdf"),
    ],
)
def test_files_without_text_are_invalid(data: bytes, filename: str) -> None:
    error = parse_error(data, filename)
    assert error.code == "invalid_file"
    assert "no text" in error.message


@settings(max_examples=200, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=600),
        st.sampled_from([make_pdf(["fuzz"]), make_docx()]).flatmap(
            lambda doc: st.tuples(st.integers(0, len(doc)), st.binary(max_size=20)).map(
                lambda cut: doc[: cut[0]] + cut[1]
            )
        ),
    ),
    filename=st.sampled_from(["a.pdf", "a.docx", "a.html", "a.json", "a.csv", "a.txt", "a.py", "a.bin", "a"]),
)
def test_parsing_never_raises_anything_but_parse_error(data: bytes, filename: str) -> None:
    try:
        text = parse_document(data, filename)
    except ParseError as error:
        assert error.code in ("unsupported_file", "invalid_file")
    else:
        assert text.strip()
