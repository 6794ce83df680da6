"""Reading a ``multipart/form-data`` upload as it arrives: the ``file`` part streams into a staged blob
(never whole into memory) and reading stops as soon as it passes the size limit; the few small text
fields beside it are collected.

Starlette's ``request.form()`` would spool the file to a temporary file of its own first, and only
tell us its size once the whole body had been read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from openassistants.errors import InvalidRequest, PayloadTooLarge
from openassistants.storage.blobs import StagedBlob

if TYPE_CHECKING:  # defined for type checkers only
    from python_multipart.multipart import MultipartCallbacks

#: The part that carries the file's bytes.
FILE_FIELD = "file"
#: Text fields are a purpose and an expiry: a few, and short.
MAX_FIELDS = 16
MAX_FIELD_BYTES = 1024


@dataclass
class Upload:
    """What the form said besides the file's bytes (those are in the staged blob)."""

    fields: dict[str, str] = field(default_factory=dict)
    has_file: bool = False
    filename: str | None = None


async def receive_upload(request: Request, staged: StagedBlob, *, max_file_bytes: int) -> Upload:
    """Parses the request body; raises InvalidRequest for a malformed one, PayloadTooLarge past the limit."""
    media_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest(
            "Invalid Content-Type header: expected multipart/form-data with a boundary, "
            "carrying a 'file' and a 'purpose'.",
            param=None,
        )
    reader = _PartReader()
    try:
        parser = MultipartParser(boundary, reader.callbacks())
        async for chunk in request.stream():
            parser.write(chunk)
            for data in reader.take_file_data():
                if staged.size + len(data) > max_file_bytes:
                    raise PayloadTooLarge(
                        f"File too large: the limit is {max_file_bytes} bytes.", param=FILE_FIELD
                    )
                await staged.write(data)
        parser.finalize()
    except FormParserError as exc:
        raise _malformed(str(exc)) from exc
    except ClientDisconnect:
        raise _malformed("the client disconnected before the body was complete") from None
    if not reader.ended:
        raise _malformed("the body ends before the closing boundary")
    return reader.upload


def _malformed(detail: str) -> InvalidRequest:
    return InvalidRequest(f"Could not parse the multipart form data: {detail}.", param=None)


class _PartReader:
    """python-multipart's callbacks: which part we are in, and where its bytes go."""

    def __init__(self) -> None:
        self.upload = Upload()
        self.ended = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._name = ""
        self._is_file = False
        self._value = bytearray()
        self._file_data: list[bytes] = []

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }

    def take_file_data(self) -> list[bytes]:
        """The file's bytes parsed since the last call (at most one network read's worth)."""
        data, self._file_data = self._file_data, []
        return data

    def _on_part_begin(self) -> None:
        self._disposition = b""
        self._value = bytearray()
        self._is_file = False

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name, self._header_value = bytearray(), bytearray()

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise _malformed("a part has no Content-Disposition name")
        self._name = options[b"name"].decode("utf-8", "replace")
        if self._name == FILE_FIELD:
            if self.upload.has_file:
                raise InvalidRequest("Only one 'file' may be uploaded per request.", param=FILE_FIELD)
            self.upload.has_file = True
            self._is_file = True
            filename = options.get(b"filename")
            self.upload.filename = filename.decode("utf-8", "replace") if filename is not None else None
        elif len(self.upload.fields) >= MAX_FIELDS:
            raise InvalidRequest(f"Too many form fields: at most {MAX_FIELDS} are accepted.", param=None)

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self._file_data.append(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise InvalidRequest(
                f"Invalid '{self._name}': longer than {MAX_FIELD_BYTES} bytes.", param=self._name
            )

    def _on_part_end(self) -> None:
        if self._is_file:
            return
        try:
            self.upload.fields[self._name] = self._value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(f"Invalid '{self._name}': not UTF-8 text.", param=self._name) from None

    def _on_end(self) -> None:
        self.ended = True
