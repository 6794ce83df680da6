"""The Files API through the official SDK on a real server: upload, retrieve, list, download, delete;
purposes and expiry, filename sanitizing, size limits, malformed uploads, tenancy, and the bytes on
disk. The last sections test the blob store and the file service's storage side directly."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import func, insert, select, update

from openassistants.errors import NotFound
from openassistants.schemas.files import FileCreate, FileExpiresAfter
from openassistants.services import files as service
from openassistants.services.lookup import load_file
from openassistants.storage import tables
from openassistants.storage.blobs import CHUNK_BYTES, STALE_STAGING_SECONDS, LocalBlobStore
from openassistants.storage.db import Database
from tests.conftest import TENANT_A_KEY, Server, ServerFactory, checked_sdk_client
from tests.spec import SpecChecker, assert_api_error

FILE_KEYS = {
    "id",
    "object",
    "bytes",
    "created_at",
    "expires_at",
    "filename",
    "purpose",
    "status",
    "status_details",
}


async def upload(
    client: openai.AsyncOpenAI, content: bytes = b"hello", name: str = "hello.txt", **params: Any
) -> Any:
    params.setdefault("purpose", "assistants")
    return await client.files.create(file=(name, content), **params)


async def download(client: openai.AsyncOpenAI, file_id: str) -> bytes:
    return (await client.files.content(file_id)).content


def multipart(*parts: tuple[str, bytes | str, str | None], boundary: str = "b0undary") -> bytes:
    """A multipart/form-data body from (name, value, filename) parts, exactly as given."""
    body = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        data = value.encode() if isinstance(value, str) else value
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


async def post_multipart(raw: httpx.AsyncClient, body: bytes, boundary: str = "b0undary") -> httpx.Response:
    return await raw.post(
        "/files", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )


def stored_blobs(data_dir: Path) -> list[Path]:
    """Every file under the server's blob directory, staged ones included."""
    return sorted(p for p in (data_dir / "files").rglob("*") if p.is_file())


def only_data_dir(tmp_path: Path) -> Path:
    """The data dir of the one server this test started with ``server_factory``."""
    (data_dir,) = tmp_path.glob("data-*")
    return data_dir


# --- round trips ---------------------------------------------------------------------------------------


async def test_upload_retrieve_download_round_trip(sdk: openai.AsyncOpenAI) -> None:
    before = int(time.time())
    created = await upload(sdk, b"hello, files", "notes.txt")
    assert created.id.startswith("file-")
    assert created.object == "file"
    assert created.bytes == len(b"hello, files")
    assert before <= created.created_at <= int(time.time())
    assert created.filename == "notes.txt"
    assert created.purpose == "assistants"
    assert created.status == "processed"
    assert created.status_details is None
    assert created.expires_at is None

    retrieved = await sdk.files.retrieve(created.id)
    assert retrieved.model_dump() == created.model_dump()
    assert (await sdk.files.wait_for_processing(created.id)).status == "processed"
    assert await download(sdk, created.id) == b"hello, files"


async def test_the_file_object_has_exactly_the_hosted_fields(raw: httpx.AsyncClient) -> None:
    created = await post_multipart(raw, multipart(("purpose", "assistants", None), ("file", b"x", "a.txt")))
    assert created.status_code == 200, created.text
    body = created.json()
    assert set(body) == FILE_KEYS
    assert body["status_details"] is None and body["expires_at"] is None
    retrieved = await raw.get(f"/files/{body['id']}")
    assert retrieved.json() == body


async def test_a_binary_file_round_trips_byte_for_byte(
    sdk: openai.AsyncOpenAI, raw: httpx.AsyncClient
) -> None:
    content = bytes(range(256)) * 64 + b"\x00\r\n--b0undary--\r\n" + os.urandom(4096)
    created = await upload(sdk, content, "blob.bin")
    assert created.bytes == len(content)
    assert await download(sdk, created.id) == content
    response = await raw.get(f"/files/{created.id}/content")
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-length"] == str(len(content))
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"blob.bin\"; filename*=UTF-8''blob.bin"
    )


async def test_a_multi_megabyte_file_round_trips(sdk: openai.AsyncOpenAI) -> None:
    content = os.urandom(3 * CHUNK_BYTES + 12_345)  # several disk writes and download chunks
    created = await upload(sdk, content, "big.dat", purpose="user_data")
    assert created.bytes == len(content)
    assert await download(sdk, created.id) == content


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        ("notes.txt", "text/plain"),
        ("data.json", "application/json"),
        ("page.html", "text/html"),
        ("no-extension", "application/octet-stream"),
        ("odd.zz-unknown", "application/octet-stream"),
    ],
)
async def test_the_download_content_type_follows_the_filename(
    sdk: openai.AsyncOpenAI, raw: httpx.AsyncClient, filename: str, content_type: str
) -> None:
    created = await upload(sdk, b"{}", filename)
    response = await raw.get(f"/files/{created.id}/content")
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.content == b"{}"


# --- purposes and expiry --------------------------------------------------------------------------------


@pytest.mark.parametrize("purpose", ["assistants", "batch", "fine-tune", "vision", "user_data"])
async def test_every_request_purpose_is_accepted(sdk: openai.AsyncOpenAI, purpose: str) -> None:
    created = await upload(sdk, purpose=purpose)
    assert created.purpose == purpose
    assert (await sdk.files.retrieve(created.id)).purpose == purpose


async def test_the_evals_purpose_is_accepted_and_echoed(isolated_server: Server, isolated_key: str) -> None:
    # The spec's response enum lacks "evals" (its request enum has it), so this runs unchecked, in a
    # tenant of its own whose lists no spec-checked test reads.
    async with openai.AsyncOpenAI(base_url=isolated_server.base_url, api_key=isolated_key) as client:
        created = await upload(client, purpose="evals")
        assert created.purpose == "evals"
        assert [f.id for f in (await client.files.list(purpose="evals")).data] == [created.id]


async def test_an_unknown_purpose_is_a_400_naming_it(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await upload(sdk, purpose="assistants_output")
    assert_api_error(caught.value, 400, param="purpose", code="invalid_value", message="assistants_output")


async def test_a_missing_purpose_or_file_is_a_400(raw: httpx.AsyncClient) -> None:
    no_purpose = await post_multipart(raw, multipart(("file", b"x", "a.txt")))
    assert no_purpose.status_code == 400
    assert no_purpose.json()["error"]["param"] == "purpose"
    assert no_purpose.json()["error"]["code"] == "missing_required_parameter"
    no_file = await post_multipart(raw, multipart(("purpose", "assistants", None)))
    assert no_file.status_code == 400
    assert no_file.json()["error"] == {
        "message": "Missing required parameter: 'file'.",
        "type": "invalid_request_error",
        "param": "file",
        "code": "missing_required_parameter",
    }


@pytest.mark.parametrize("seconds", [3600, 86_400, 2_592_000])
async def test_expires_after_sets_expires_at(sdk: openai.AsyncOpenAI, seconds: int) -> None:
    created = await upload(sdk, expires_after={"anchor": "created_at", "seconds": seconds})
    assert created.expires_at == created.created_at + seconds
    assert (await sdk.files.retrieve(created.id)).expires_at == created.expires_at
    listed = [f async for f in sdk.files.list(purpose="assistants", limit=100)]
    assert created.id in [f.id for f in listed]


@pytest.mark.parametrize(
    ("expires_after", "param"),
    [
        ({"anchor": "created_at", "seconds": 3599}, "expires_after.seconds"),
        ({"anchor": "created_at", "seconds": 2_592_001}, "expires_after.seconds"),
        ({"anchor": "last_active_at", "seconds": 3600}, "expires_after.anchor"),
        ({"anchor": "created_at"}, "expires_after.seconds"),
    ],
)
async def test_expires_after_out_of_range_is_a_400(
    sdk: openai.AsyncOpenAI, expires_after: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await upload(sdk, expires_after=expires_after)
    assert_api_error(caught.value, 400, param=param)


async def test_expires_after_seconds_must_be_an_integer(raw: httpx.AsyncClient) -> None:
    body = multipart(
        ("purpose", "assistants", None),
        ("expires_after[anchor]", "created_at", None),
        ("expires_after[seconds]", "an hour", None),
        ("file", b"x", "a.txt"),
    )
    response = await post_multipart(raw, body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "expires_after.seconds"
    assert response.json()["error"]["code"] == "invalid_type"


# --- filenames ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("../../etc/passwd", "passwd"),
        ("/etc/shadow", "shadow"),
        ("..\\..\\Windows\\system32\\evil.dll", "evil.dll"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("dir/sub/../notes.md", "notes.md"),
        ("..", "file"),
        ("../", "file"),
        ("résumé ✓.pdf", "résumé ✓.pdf"),
        (".hidden", ".hidden"),
    ],
)
async def test_filenames_keep_only_their_last_component(
    sdk: openai.AsyncOpenAI, sent: str, stored: str
) -> None:
    created = await upload(sdk, b"secret?", sent)
    assert created.filename == stored
    assert (await sdk.files.retrieve(created.id)).filename == stored
    assert await download(sdk, created.id) == b"secret?"


async def test_control_characters_are_stripped_from_filenames(raw: httpx.AsyncClient) -> None:
    body = multipart(("purpose", "assistants", None), ("file", b"x", "bad\x01\x1f\x7fname\x00.txt"))
    response = await post_multipart(raw, body)
    assert response.status_code == 200, response.text
    assert response.json()["filename"] == "badname.txt"


async def test_long_filenames_are_cut_to_255_characters_keeping_the_extension(
    sdk: openai.AsyncOpenAI,
) -> None:
    created = await upload(sdk, b"x", "a" * 300 + ".txt")
    assert created.filename == "a" * 251 + ".txt"
    no_extension = await upload(sdk, b"x", "b" * 300)
    assert no_extension.filename == "b" * 255


async def test_a_non_ascii_filename_downloads_with_an_rfc_5987_disposition(
    sdk: openai.AsyncOpenAI, raw: httpx.AsyncClient
) -> None:
    created = await upload(sdk, b"x", 'ré"sumé.txt')
    response = await raw.get(f"/files/{created.id}/content")
    # httpx sends a quote in a filename as %22 (HTML5 form encoding); either way it is never raw.
    assert response.headers["content-disposition"].startswith('attachment; filename="r_')
    assert "filename*=UTF-8''r%C3%A9" in response.headers["content-disposition"]


def test_sanitize_filename() -> None:
    assert service.sanitize_filename(None) == "file"
    assert service.sanitize_filename("  spaced.txt  ") == "spaced.txt"
    assert service.sanitize_filename("a\\b/c\x00d.txt") == "cd.txt"
    # An "extension" too long to be one is cut like the rest of the name.
    assert service.sanitize_filename("x" * 250 + ".extension-too-long") == "x" * 250 + ".exte"
    assert len(service.sanitize_filename("é" * 400)) == 255


# --- sizes ----------------------------------------------------------------------------------------------


async def test_an_empty_file_is_a_400(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await upload(sdk, b"")
    assert_api_error(caught.value, 400, param="file", message="File is empty.")


async def test_a_file_over_max_upload_bytes_is_a_413_and_leaves_nothing_behind(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    checker = SpecChecker()
    with server_factory(max_upload_bytes=1000, max_body_bytes=100) as small:
        async with checked_sdk_client(small, checker) as client:
            at_limit = await upload(client, b"a" * 1000, "at-limit.txt")  # above max_body_bytes: fine
            with pytest.raises(openai.APIStatusError) as caught:
                await upload(client, b"a" * 1001, "over.txt")
            assert_api_error(caught.value, 413, param="file", message="the limit is 1000 bytes")
            with pytest.raises(openai.APIStatusError) as caught:
                await upload(client, os.urandom(200_000), "far-over.bin")
            assert_api_error(caught.value, 413)
            assert [f.id async for f in client.files.list()] == [at_limit.id]
        assert [p.name for p in stored_blobs(only_data_dir(tmp_path))] == [at_limit.id]
    checker.assert_clean()


async def test_a_declared_body_far_over_the_upload_limit_is_refused_before_reading(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    with server_factory(max_upload_bytes=1000, max_body_bytes=500) as small:
        async with httpx.AsyncClient(
            base_url=small.base_url, headers={"Authorization": f"Bearer {TENANT_A_KEY}"}
        ) as raw:
            body = multipart(("purpose", "assistants", None), ("file", b"a" * 200_000, "a.bin"))
            response = await post_multipart(raw, body)
            assert response.status_code == 413
            assert response.json()["error"]["message"].startswith("Request body too large")
            # Other bodies keep max_body_bytes.
            big_json = await raw.post("/assistants", json={"model": "m", "instructions": "x" * 1000})
            assert big_json.status_code == 413
        assert stored_blobs(only_data_dir(tmp_path)) == []


# --- malformed uploads ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"purpose": "assistants"}'),
        ("multipart/form-data", multipart(("purpose", "assistants", None), ("file", b"x", "a"))),
        ("multipart/form-data; boundary=b0undary", b"not multipart at all"),
        (
            "multipart/form-data; boundary=b0undary",
            multipart(("purpose", "assistants", None), ("file", b"x" * 5000, "a")).removesuffix(
                b"--b0undary--\r\n"
            ),
        ),
        (
            "multipart/form-data; boundary=b0undary",
            b"--b0undary\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b0undary--\r\n",
        ),
        ("multipart/form-data; boundary=b0undary", b"--b0undary\r\nno colon here\r\n\r\n"),
        ("multipart/form-data; boundary=other", multipart(("file", b"x", "a"))),
    ],
    ids=["json", "no-boundary", "garbage", "truncated", "unnamed-part", "bad-header", "wrong-boundary"],
)
async def test_a_malformed_upload_is_a_400(raw: httpx.AsyncClient, content_type: str, body: bytes) -> None:
    response = await raw.post("/files", content=body, headers={"content-type": content_type})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_two_files_or_unknown_fields_are_400s(raw: httpx.AsyncClient) -> None:
    two = await post_multipart(
        raw, multipart(("purpose", "assistants", None), ("file", b"1", "a"), ("file", b"2", "b"))
    )
    assert two.status_code == 400
    assert two.json()["error"]["param"] == "file"
    extra = await post_multipart(
        raw, multipart(("purpose", "assistants", None), ("colour", "blue", None), ("file", b"1", "a"))
    )
    assert extra.status_code == 400
    assert extra.json()["error"]["code"] == "unknown_parameter"
    long_field = await post_multipart(raw, multipart(("purpose", "a" * 5000, None), ("file", b"1", "a")))
    assert long_field.status_code == 400
    assert long_field.json()["error"]["param"] == "purpose"


async def test_the_file_part_may_come_first(raw: httpx.AsyncClient) -> None:
    response = await post_multipart(
        raw, multipart(("file", b"first", "first.txt"), ("purpose", "vision", None))
    )
    assert response.status_code == 200, response.text
    assert response.json()["purpose"] == "vision"
    content = await raw.get(f"/files/{response.json()['id']}/content")
    assert content.content == b"first"


# --- list -----------------------------------------------------------------------------------------------


@pytest.fixture
async def empty_tenant(
    isolated_server: Server, isolated_key: str, spec_checker: SpecChecker
) -> AsyncIterator[openai.AsyncOpenAI]:
    async with checked_sdk_client(isolated_server, spec_checker, isolated_key) as client:
        yield client


async def test_list_orders_filters_and_paginates(empty_tenant: openai.AsyncOpenAI) -> None:
    client = empty_tenant
    assert (await client.files.list()).data == []
    purposes = ["assistants", "batch", "assistants", "vision", "assistants"]
    ids = [(await upload(client, f"{i}".encode(), f"{i}.txt", purpose=p)).id for i, p in enumerate(purposes)]

    assert [f.id for f in (await client.files.list()).data] == ids[::-1]
    assert [f.id for f in (await client.files.list(order="asc")).data] == ids
    assert [f.id async for f in client.files.list(limit=2)] == ids[::-1]
    assert [f.id async for f in client.files.list(limit=2, order="asc")] == ids

    page = await client.files.list(limit=2, order="asc")
    assert [f.id for f in page.data] == ids[:2] and page.has_more
    page = await client.files.list(limit=2, order="asc", after=ids[1])
    assert [f.id for f in page.data] == ids[2:4] and page.has_more
    page = await client.files.list(limit=2, order="asc", after=ids[3])
    assert [f.id for f in page.data] == ids[4:] and not page.has_more

    assert [f.id for f in (await client.files.list(purpose="assistants")).data] == [ids[4], ids[2], ids[0]]
    assert [f.id for f in (await client.files.list(purpose="batch")).data] == [ids[1]]
    assert (await client.files.list(purpose="fine-tune")).data == []
    walked = [f.id async for f in client.files.list(purpose="assistants", limit=1, order="asc")]
    assert walked == [ids[0], ids[2], ids[4]]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"after": "file-nope"}, "after"),
    ],
)
async def test_list_parameters_are_checked(
    sdk: openai.AsyncOpenAI, params: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.files.list(**params)
    assert_api_error(caught.value, 400, param=param)


async def test_list_takes_up_to_10000_and_defaults_to_it(raw: httpx.AsyncClient) -> None:
    assert (await raw.get("/files", params={"limit": 10_000})).status_code == 200
    created = await post_multipart(raw, multipart(("purpose", "batch", None), ("file", b"x", "a")))
    listed = (await raw.get("/files", params={"purpose": "batch"})).json()
    assert created.json()["id"] in [f["id"] for f in listed["data"]]


# --- delete and tenancy ---------------------------------------------------------------------------------


async def test_delete_removes_the_file_and_its_bytes(server_factory: ServerFactory, tmp_path: Path) -> None:
    checker = SpecChecker()
    with server_factory() as own:
        async with checked_sdk_client(own, checker) as client:
            kept = await upload(client, b"kept", "kept.txt")
            doomed = await upload(client, b"doomed", "../doomed.txt")
            blobs = stored_blobs(only_data_dir(tmp_path))
            assert sorted(p.name for p in blobs) == sorted([kept.id, doomed.id])  # by id, never by name

            deleted = await client.files.delete(doomed.id)
            assert deleted.model_dump() == {"id": doomed.id, "object": "file", "deleted": True}
            assert [p.name for p in stored_blobs(only_data_dir(tmp_path))] == [kept.id]
            for call in (client.files.retrieve, client.files.content, client.files.delete):
                with pytest.raises(openai.NotFoundError) as caught:
                    await call(doomed.id)
                assert_api_error(caught.value, 404, param="id", message=f"No such File object: {doomed.id}")
            assert [f.id async for f in client.files.list()] == [kept.id]
            assert await download(client, kept.id) == b"kept"
    checker.assert_clean()


async def test_another_tenants_file_is_404_everywhere(
    sdk: openai.AsyncOpenAI, sdk_b: openai.AsyncOpenAI
) -> None:
    mine = await upload(sdk, b"private", "private.txt")
    for call in (sdk_b.files.retrieve, sdk_b.files.content, sdk_b.files.delete):
        with pytest.raises(openai.NotFoundError) as caught:
            await call(mine.id)
        assert_api_error(caught.value, 404, param="id", code=None, message=f"No such File object: {mine.id}")
    assert mine.id not in [f.id async for f in sdk_b.files.list()]
    with pytest.raises(openai.BadRequestError):
        await sdk_b.files.list(after=mine.id)  # not a cursor in their list either
    assert await download(sdk, mine.id) == b"private"


@pytest.mark.parametrize("file_id", ["file-doesnotexist", "../../etc/passwd", "x" * 200])
async def test_unknown_ids_are_404(sdk: openai.AsyncOpenAI, file_id: str) -> None:
    for call in (sdk.files.retrieve, sdk.files.content, sdk.files.delete):
        with pytest.raises(openai.NotFoundError):
            await call(file_id)


# --- the file service's storage side: vector-store rows and expiry ---------------------------------------
# Vector stores and the passing of time cannot be driven through this API alone, so these tests use
# the service and tables directly, on the session's database (both backends).


@pytest.fixture
async def db(database_url: str | None, tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(database_url or f"sqlite+aiosqlite:///{tmp_path / 'files.db'}")
    await database.migrate()
    yield database
    await database.close()


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "files")


async def create(
    db: Database, blobs: LocalBlobStore, tenant: str, content: bytes = b"data", expires: int | None = None
) -> dict[str, Any]:
    expires_after = FileExpiresAfter(anchor="created_at", seconds=expires) if expires else None
    async with blobs.stage() as staged:
        await staged.write(content)
        return await service.create_file(
            db, blobs, tenant, FileCreate(purpose="assistants", expires_after=expires_after), "a.txt", staged
        )


async def test_deleting_a_file_removes_it_from_every_vector_store(
    db: Database, blobs: LocalBlobStore
) -> None:
    tenant = f"t_{uuid.uuid4().hex}"
    doomed = (await create(db, blobs, tenant))["id"]
    kept = (await create(db, blobs, tenant))["id"]
    vf, chunks = tables.vector_store_files, tables.chunks
    async with db.write() as conn:
        for store in ("vs_one", "vs_two"):
            for file_id in (doomed, kept):
                await conn.execute(
                    insert(vf).values(
                        id=file_id,
                        tenant_id=tenant,
                        vector_store_id=f"{store}_{tenant}",
                        created_at=0,
                        status="completed",
                        chunking_strategy={"type": "auto"},
                        usage_bytes=4,
                    )
                )
                await conn.execute(
                    insert(chunks).values(
                        tenant_id=tenant,
                        vector_store_id=f"{store}_{tenant}",
                        file_id=file_id,
                        chunk_index=0,
                        text=f"words of {file_id}",
                        tokens=3,
                        embedding=b"\x00" * 16,
                    )
                )

    assert await service.delete_file(db, blobs, tenant, doomed) == {
        "id": doomed,
        "object": "file",
        "deleted": True,
    }
    async with db.read() as conn:
        for table, column in ((vf, vf.c.id), (chunks, chunks.c.file_id)):
            counted = select(column, func.count()).where(table.c.tenant_id == tenant).group_by(column)
            assert dict((await conn.execute(counted)).all()) == {kept: 2}
    with pytest.raises(NotFound):
        await service.read_file_bytes(blobs, tenant, doomed)
    assert await service.read_file_bytes(blobs, tenant, kept) == b"data"


async def test_an_expired_file_is_gone_and_its_bytes_removed_on_access(
    db: Database, blobs: LocalBlobStore
) -> None:
    tenant = f"t_{uuid.uuid4().hex}"
    expired, listed_only, live = [(await create(db, blobs, tenant, expires=3600))["id"] for _ in range(3)]
    async with db.write() as conn:  # an hour passes for two of them
        past = int(time.time()) - 1
        files = tables.files
        await conn.execute(
            update(files).where(files.c.id.in_([expired, listed_only])).values(expires_at=past)
        )

    page = await service.list_files(db, tenant, purpose=None, limit=100, order="asc", after=None)
    assert [f["id"] for f in page["data"]] == [live]
    async with db.read() as conn:
        with pytest.raises(NotFound):
            await load_file(conn, tenant, expired)
        assert (await load_file(conn, tenant, live))["id"] == live
    with pytest.raises(NotFound) as caught:
        await service.get_file(db, blobs, tenant, expired)
    assert caught.value.message == f"No such File object: {expired}"
    assert not blobs.path(service.blob_key(tenant, expired)).exists()
    assert blobs.path(service.blob_key(tenant, listed_only)).exists()  # lazily: not yet accessed
    for call in (service.open_file_content, service.delete_file):
        with pytest.raises(NotFound):
            await call(db, blobs, tenant, listed_only)
    assert not blobs.path(service.blob_key(tenant, listed_only)).exists()
    assert (await service.get_file(db, blobs, tenant, live))["id"] == live


async def test_load_file_is_scoped_by_tenant(db: Database, blobs: LocalBlobStore) -> None:
    tenant, other = f"t_{uuid.uuid4().hex}", f"t_{uuid.uuid4().hex}"
    file_id = (await create(db, blobs, tenant))["id"]
    async with db.read() as conn:
        assert (await load_file(conn, tenant, file_id))["bytes"] == 4
        with pytest.raises(NotFound):
            await load_file(conn, other, file_id)
    with pytest.raises(NotFound):
        await service.read_file_bytes(blobs, other, file_id)


# --- the blob store ---------------------------------------------------------------------------------------


async def test_a_staged_blob_is_invisible_until_committed_and_discarded_if_not(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    content = os.urandom(2 * CHUNK_BYTES + 1)
    async with store.stage() as staged:
        for start in range(0, len(content), 65_536):
            await staged.write(content[start : start + 65_536])
        assert staged.size == len(content)
        (partial,) = (tmp_path / "blobs").iterdir()
        assert partial.name.startswith(".upload-")  # hidden and named by no key
        await staged.commit("t_a/file-1")
    assert [
        p.relative_to(tmp_path / "blobs").as_posix() for p in (tmp_path / "blobs").rglob("*") if p.is_file()
    ] == ["t_a/file-1"]
    assert await store.read("t_a/file-1") == content
    assert b"".join([chunk async for chunk in await store.open("t_a/file-1")]) == content

    with pytest.raises(RuntimeError):
        async with store.stage() as staged:
            await staged.write(b"half an upload")
            raise RuntimeError("the client went away")
    assert sorted(p.name for p in (tmp_path / "blobs").rglob("*")) == ["file-1", "t_a"]

    await store.delete("t_a/file-1")
    await store.delete("t_a/file-1")  # already gone: fine
    with pytest.raises(FileNotFoundError):
        await store.read("t_a/file-1")
    with pytest.raises(FileNotFoundError):
        await store.open("t_a/file-1")


@pytest.mark.parametrize("key", ["../escape", "t_a/../../x", "/abs", "a/b/c", "", "a\x00b", "a b"])
async def test_blob_keys_cannot_name_a_path_outside_the_store(tmp_path: Path, key: str) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(ValueError):
        await store.read(key)
    with pytest.raises(ValueError):
        async with store.stage() as staged:
            await staged.write(b"x")
            await staged.commit(key)
    assert list((tmp_path / "blobs").iterdir()) == []


def test_opening_a_store_removes_uploads_a_dead_process_left_staged(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    root.mkdir()
    (root / "t_a").mkdir()
    stale, fresh, blob = root / ".upload-dead.part", root / ".upload-live.part", root / "t_a" / "file-1"
    for path in (stale, fresh, blob):
        path.write_bytes(b"x")
    long_ago = time.time() - STALE_STAGING_SECONDS - 60
    for path in (stale, blob):
        os.utime(path, (long_ago, long_ago))
    LocalBlobStore(root)
    assert not stale.exists()
    assert fresh.exists() and blob.exists()
