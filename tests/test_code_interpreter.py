"""The code_interpreter tool in runs, through the SDK: code runs in the thread's sandboxed kernel,
its logs, images and files come back in the step, to the model, and in the reply."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.beta.threads import Text, TextDelta

from tests.conftest import TENANT_A_KEY, ServerFactory, sdk_client
from tests.processes import ServerProcess, process_env, running
from tests.upstream import Reply, ScriptedUpstream, ToolCalls

if shutil.which("bwrap") is None:
    if os.environ.get("OPENASSISTANTS_TEST_REQUIRE_POSTGRES"):  # set in CI, where bwrap is installed
        raise RuntimeError("bubblewrap (bwrap) is required in CI for the code interpreter tests")
    pytest.skip("bubblewrap (bwrap) is not installed", allow_module_level=True)


def _code(source: str) -> str:
    return json.dumps({"code": source})


async def _assistant(client: openai.AsyncOpenAI, model: str, **extra: object) -> str:
    assistant = await client.beta.assistants.create(
        model=model, tools=[{"type": "code_interpreter"}], **extra
    )  # type: ignore[arg-type]
    return assistant.id


async def test_code_runs_and_its_logs_reach_step_and_model(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, ToolCalls([("code_interpreter", _code("print(6 * 7)"))]), Reply("It is 42."))
    assistant_id = await _assistant(client, model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "6*7?"}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id)
    assert run.status == "completed"
    offered = upstream.requests(model)[0]["tools"]
    assert offered[0]["function"]["name"] == "code_interpreter"
    steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc")
    call = steps.data[0].step_details.tool_calls[0]  # type: ignore[union-attr]
    assert call.type == "code_interpreter"
    assert call.code_interpreter.input == "print(6 * 7)"  # type: ignore[union-attr]
    assert call.code_interpreter.outputs[0].logs.strip() == "42"  # type: ignore[union-attr]
    tool_message = upstream.requests(model)[1]["messages"][-1]
    assert tool_message["role"] == "tool" and "42" in tool_message["content"]


async def test_state_is_kept_per_thread_and_errors_go_back_to_the_model(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(
        model,
        ToolCalls([("code_interpreter", _code("secret = 41"))]),
        Reply("stored"),
        ToolCalls([("code_interpreter", _code("print(secret + 1)"))]),
        Reply("42"),
        ToolCalls([("code_interpreter", _code("print(secret)"))]),
        Reply("not here"),
    )
    assistant_id = await _assistant(client, model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    for _ in range(2):
        run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id)
        assert run.status == "completed"
    assert "42" in upstream.requests(model)[3]["messages"][-1]["content"]

    other = await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=other.id, assistant_id=assistant_id)
    assert run.status == "completed"  # the error went to the model, which carried on
    assert "NameError" in upstream.requests(model)[5]["messages"][-1]["content"]


async def test_input_files_images_and_output_files(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    data = await client.files.create(file=("numbers.csv", b"n\n1\n2\n3\n"), purpose="assistants")
    code = (
        "import pandas as pd, matplotlib.pyplot as plt\n"
        "df = pd.read_csv('/mnt/data/numbers.csv')\n"
        "print(df.n.sum())\n"
        "df.assign(sq=df.n ** 2).to_csv('/mnt/data/squares.csv', index=False)\n"
        "_ = plt.plot(df.n, df.n ** 2)\n"
    )
    reply = "Here is the chart and the table: [squares](sandbox:/mnt/data/squares.csv)"
    upstream.script(model, ToolCalls([("code_interpreter", _code(code))]), Reply(reply))
    assistant_id = await _assistant(
        client, model, tool_resources={"code_interpreter": {"file_ids": [data.id]}}
    )
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "plot it"}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id)
    assert run.status == "completed"

    steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc")
    outputs = steps.data[0].step_details.tool_calls[0].code_interpreter.outputs  # type: ignore[union-attr]
    assert outputs[0].type == "logs" and outputs[0].logs.strip() == "6"  # type: ignore[union-attr]
    images = [o.image.file_id for o in outputs if o.type == "image"]  # type: ignore[union-attr]
    assert len(images) == 1

    message = (await client.beta.threads.messages.list(thread.id, limit=1)).data[0]
    assert message.content[0].type == "image_file"
    assert message.content[0].image_file.file_id == images[0]  # type: ignore[union-attr]
    png = await client.files.content(images[0])
    assert png.read()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (await client.files.retrieve(images[0])).purpose == "assistants_output"

    text = message.content[1].text  # type: ignore[union-attr]
    assert text.value == reply
    [annotation] = text.annotations
    assert annotation.type == "file_path" and annotation.text == "sandbox:/mnt/data/squares.csv"
    assert text.value[annotation.start_index : annotation.end_index] == annotation.text
    csv = await client.files.content(annotation.file_path.file_id)  # type: ignore[union-attr]
    assert csv.read().decode().splitlines() == ["n,sq", "1,1", "2,4", "3,9"]


async def test_code_input_and_outputs_stream(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    source = 'for i in range(3):\n    print("line", i)\n'
    upstream.script(model, ToolCalls([("code_interpreter", _code(source))], arg_chunks=6), Reply("done"))
    assistant_id = await _assistant(client, model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "loop"}])
    async with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant_id) as stream:
        await stream.until_done()
        steps = await stream.get_final_run_steps()
    call = steps[0].step_details.tool_calls[0]  # type: ignore[union-attr]
    assert call.type == "code_interpreter"
    assert call.code_interpreter.input == source  # type: ignore[union-attr]
    assert "line 2" in call.code_interpreter.outputs[0].logs  # type: ignore[union-attr]


async def test_hostile_code_is_contained_and_other_runs_proceed(
    server_factory: ServerFactory, upstream: ScriptedUpstream, model: str, tmp_path: Path
) -> None:
    # server_factory keeps the server's data dir (its database, its file blobs) under tmp_path.
    probe = (
        "import os, socket\n"
        "print('env', sorted(k for k in os.environ if 'OPENASSISTANTS' in k or 'KEY' in k))\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 5432), timeout=2)\n"
        "    print('network: reached')\n"
        "except OSError as exc:\n"
        "    print('network: blocked')\n"
        f"print('data dir', os.path.exists({str(tmp_path)!r}))\n"
    )
    slow_model = model + "-loop"
    upstream.script(
        slow_model, ToolCalls([("code_interpreter", _code("while True:\n    pass"))]), Reply("gave up")
    )
    fork_model, memory_model = model + "-fork", model + "-memory"
    fork_bomb = "import os\nwhile True:\n    os.fork()"
    memory_hog = "hog = []\nwhile True:\n    hog.append(bytearray(50_000_000))"
    upstream.script(fork_model, ToolCalls([("code_interpreter", _code(fork_bomb))]), Reply("stopped"))
    upstream.script(memory_model, ToolCalls([("code_interpreter", _code(memory_hog))]), Reply("stopped"))
    upstream.script(model, ToolCalls([("code_interpreter", _code(probe))]), Reply("probed"))
    with server_factory(code_interpreter_timeout_seconds=3) as server:
        async with sdk_client(server) as client:
            looping = await client.beta.threads.create_and_run(
                assistant_id=await _assistant(client, slow_model),
                thread={"messages": [{"role": "user", "content": "loop"}]},
            )
            # While one thread's code spins, another thread's run goes through.
            run = await client.beta.threads.create_and_run_poll(
                assistant_id=await _assistant(client, model),
                thread={"messages": [{"role": "user", "content": "probe"}]},
            )
            assert run.status == "completed"
            logs = upstream.requests(model)[1]["messages"][-1]["content"]
            assert "env []" in logs and "network: blocked" in logs and "data dir False" in logs

            # A fork bomb and a memory hog are stopped by their limits; the error reaches the model.
            for hostile in (fork_model, memory_model):
                stopped = await client.beta.threads.create_and_run_poll(
                    assistant_id=await _assistant(client, hostile),
                    thread={"messages": [{"role": "user", "content": "go"}]},
                )
                assert stopped.status == "completed"
                assert upstream.requests(hostile)[1]["messages"][-1]["role"] == "tool"
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"{server.url}/healthz")).status_code == 200

            looped = await client.beta.threads.runs.poll(looping.id, thread_id=looping.thread_id)
            assert looped.status == "completed"  # the timeout went back to the model
            told = upstream.requests(slow_model)[1]["messages"][-1]["content"]
            assert "time" in told.lower()


class _TextDeltas(openai.AsyncAssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.deltas: list[TextDelta] = []
        self.snapshot: Text | None = None

    async def on_text_delta(self, delta: TextDelta, snapshot: Text) -> None:
        self.deltas.append(delta)
        self.snapshot = snapshot.model_copy(deep=True)


async def test_file_path_annotations_stream_in_the_deltas(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    """A link's annotation goes out once a character ends it; one ending the text, just before the
    completed message. The SDK's snapshot then has the completed message's annotations."""
    code = "for name in ('a.txt', 'b.txt'):\n    open('/mnt/data/' + name, 'w').write(name)\n"
    reply = "See sandbox:/mnt/data/a.txt and sandbox:/mnt/data/b.txt"
    chunks = ["See sandbox:/mnt/data/a", ".txt", " and sandbox:/mnt", "/data/b.txt"]
    upstream.script(model, ToolCalls([("code_interpreter", _code(code))]), Reply(reply, chunks=chunks))
    assistant_id = await _assistant(client, model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "write files"}])
    handler = _TextDeltas()
    async with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant_id, event_handler=handler
    ) as stream:
        await stream.until_done()
        [final] = await stream.get_final_messages()
    stored = await client.beta.threads.messages.retrieve(final.id, thread_id=thread.id)
    text = stored.content[0].text  # type: ignore[union-attr]
    expected = [a.model_dump(exclude_none=True) for a in text.annotations]
    assert [(a["type"], a["text"]) for a in expected] == [
        ("file_path", "sandbox:/mnt/data/a.txt"),
        ("file_path", "sandbox:/mnt/data/b.txt"),
    ]

    streamed = [(d.value, a) for d in handler.deltas for a in d.annotations or []]
    assert [a.index for _, a in streamed] == [0, 1]
    # The first went out with the text after it; the last, alone, once the text was over.
    assert streamed[0][0] is not None and " and" in streamed[0][0]
    assert streamed[1][0] is None
    assert [a.model_dump(exclude={"index"}, exclude_none=True) for _, a in streamed] == expected
    assert handler.snapshot is not None and handler.snapshot.value == reply
    assert [
        a.model_dump(exclude={"index"}, exclude_none=True) for a in handler.snapshot.annotations
    ] == expected


async def test_processes_a_cell_starts_end_with_it(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    # Detached every way there is: a new session, a double fork (reparented to the init), a daemon
    # that ignores SIGHUP and SIGTERM. None may outlive the call, nor eat CPU for other tenants.
    spawn = (
        "import os, signal, subprocess, sys\n"
        "subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
        "burn = 'import signal\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\nwhile True: pass'\n"
        "subprocess.Popen([sys.executable, '-c', burn], start_new_session=True)\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
        "    if os.fork() == 0:\n"
        "        os.execvp('sleep', ['sleep', '600'])\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "print('spawned')\n"
    )
    survey = (
        "import os\n"
        "pids = [int(p) for p in os.listdir('/proc') if p.isdigit()]\n"
        "print('others', [p for p in pids if p not in (1, os.getpid())])\n"
    )
    upstream.script(
        model,
        ToolCalls([("code_interpreter", _code(spawn))]),
        ToolCalls([("code_interpreter", _code(survey))]),
        Reply("done"),
    )
    assistant_id = await _assistant(client, model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "spawn"}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id)
    assert run.status == "completed"
    told = upstream.requests(model)[1]["messages"][-1]["content"]
    assert "spawned" in told and "[3 processes the code left running were stopped" in told
    # The same kernel (no restart note), yet nothing but its init and its driver is left.
    survey_output = upstream.requests(model)[2]["messages"][-1]["content"]
    assert survey_output.strip() == "others []"


async def test_mnt_data_has_a_quota_and_output_files_are_capped_per_call(
    server_factory: ServerFactory, upstream: ScriptedUpstream, model: str
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the /mnt/data quota is a tmpfs the server mounts, which needs root")
    code = (
        "for name in ('a.txt', 'b.txt', 'c.txt'):\n"
        "    open('/mnt/data/' + name, 'w').write(name)\n"
        "try:\n"
        "    with open('/mnt/data/0.bin', 'wb') as big:\n"
        "        for _ in range(64):\n"
        "            big.write(bytes(1 << 20))\n"
        "except OSError as exc:\n"
        "    print('refused:', exc.strerror)\n"
    )
    upstream.script(model, ToolCalls([("code_interpreter", _code(code))]), Reply("done"))
    settings = {
        "code_interpreter_data_mb": 8,
        "code_interpreter_max_output_files": 2,
        "code_interpreter_max_output_mb": 1,
    }
    with server_factory(**settings) as server:
        async with sdk_client(server) as client:
            assistant_id = await _assistant(client, model)
            run = await client.beta.threads.create_and_run_poll(
                assistant_id=assistant_id, thread={"messages": [{"role": "user", "content": "fill"}]}
            )
            assert run.status == "completed"
            told = upstream.requests(model)[1]["messages"][-1]["content"]
            assert "refused: No space left on device" in told
            assert "2 more changed files in /mnt/data were not returned" in told
            steps = await client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc")
            outputs = steps.data[0].step_details.tool_calls[0].code_interpreter.outputs  # type: ignore[union-attr]
            assert [o.type for o in outputs] == ["logs"]
            # 0.bin (8 MiB, past the 1 MiB per call) and c.txt (a third file) stay in /mnt/data.
            produced = [
                f.filename for f in (await client.files.list()).data if f.purpose == "assistants_output"
            ]
            assert sorted(produced) == ["a.txt", "b.txt"]


async def test_output_files_stop_at_the_tenants_limit_and_the_model_is_told(
    server_factory: ServerFactory, upstream: ScriptedUpstream, model: str
) -> None:
    write = "open('/mnt/data/{0}', 'w').write('{0}')"
    upstream.script(
        model,
        ToolCalls([("code_interpreter", _code(write.format("first.txt")))]),
        ToolCalls([("code_interpreter", _code(write.format("second.txt")))]),
        Reply("done"),
    )
    with server_factory(code_interpreter_tenant_output_files=1) as server:
        async with sdk_client(server) as client:
            run = await client.beta.threads.create_and_run_poll(
                assistant_id=await _assistant(client, model),
                thread={"messages": [{"role": "user", "content": "write"}]},
            )
            assert run.status == "completed"
            assert "sandbox:/mnt/data/first.txt" in upstream.requests(model)[1]["messages"][-1]["content"]
            told = upstream.requests(model)[2]["messages"][-1]["content"]
            assert "second.txt was not returned" in told and "limit (1 files" in told
            produced = [
                f.filename for f in (await client.files.list()).data if f.purpose == "assistants_output"
            ]
            assert produced == ["first.txt"]


async def test_without_a_working_sandbox_the_tool_tells_the_model_and_runs_go_on(
    upstream: ScriptedUpstream, model: str, tmp_path: Path
) -> None:
    env = process_env(
        api_keys=TENANT_A_KEY,
        llm_base_url=upstream.url,
        code_interpreter_bwrap=str(tmp_path / "no-such-bwrap"),
        code_interpreter_pool_size="0",
    )
    server = ServerProcess(tmp_path / "server", env)
    upstream.script(model, ToolCalls([("code_interpreter", _code("print(1)"))]), Reply("no Python today"))
    with running(server):
        async with openai.AsyncOpenAI(
            base_url=server.base_url, api_key=TENANT_A_KEY, max_retries=0
        ) as client:
            assistant_id = await _assistant(client, model)  # as the hosted API: the tool may be chosen
            run = await client.beta.threads.create_and_run_poll(
                assistant_id=assistant_id, thread={"messages": [{"role": "user", "content": "run"}]}
            )
            assert run.status == "completed"
            told = upstream.requests(model)[1]["messages"][-1]["content"]
            assert told.startswith("Error: code_interpreter is unavailable on this server: bubblewrap (")
            assert "no-such-bwrap" in told and "apt-get install bubblewrap" in told
    warnings = [
        line for line in server.log.read_text().splitlines() if "code interpreter unavailable" in line
    ]
    assert len(warnings) == 1  # one line at start-up (logged as a warning), none per call


async def test_kernels_of_two_server_processes_run_as_different_uids(
    upstream: ScriptedUpstream, model: str, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("kernels have uids of their own only when the server runs as root")
    upstream.script(
        model,
        *[
            step
            for _ in range(2)
            for step in (
                ToolCalls([("code_interpreter", _code("import os\nprint(os.getuid())"))]),
                Reply("ok"),
            )
        ],
    )
    env = process_env(api_keys=TENANT_A_KEY, llm_base_url=upstream.url, code_interpreter_pool_size="1")
    servers = [ServerProcess(tmp_path / f"server-{n}", env) for n in range(2)]
    with running(*servers):
        for server in servers:
            async with openai.AsyncOpenAI(base_url=server.base_url, api_key=TENANT_A_KEY, max_retries=0) as c:
                run = await c.beta.threads.create_and_run_poll(
                    assistant_id=await _assistant(c, model),
                    thread={"messages": [{"role": "user", "content": "uid?"}]},
                )
                assert run.status == "completed"
    uids = [upstream.requests(model)[n]["messages"][-1]["content"] for n in (1, 3)]
    assert all(uid.strip().isdigit() for uid in uids) and uids[0] != uids[1]
