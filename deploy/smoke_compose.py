"""deploy/compose.yaml itself, brought up with podman-compose: PostgreSQL, api1, api2 and the worker.

Where no registry is reachable, POSTGRES_IMAGE is deploy/postgres-standin (Debian's PostgreSQL 15 with
the official image's variables), built here unless it exists. The compose file and Caddyfile are
copied to a temporary project directory with a .env, as an operator would write it. The scripted model
(tests/upstream.py) listens on all addresses for the length of the test, since the containers reach the
host at host.containers.internal, their network's gateway. Flow: a file uploaded through api1, a run on
it created through api2 and streamed through api1 (events from the worker, over PostgreSQL), its
code_interpreter call executed by the worker, which reads the file from the shared volume.

    IMAGE=localhost/openassistants:dev .venv/bin/python -m deploy.smoke_compose    # after deploy/smoke.sh
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import uvicorn
from openai import OpenAI

from deploy.smoke import IMAGE, engine, step, wait_healthy
from tests.servers import ThreadedServer, free_port
from tests.upstream import Reply, ScriptedUpstream, ToolCalls

DEPLOY = Path(__file__).resolve().parent
POSTGRES_IMAGE = os.environ.get("POSTGRES_IMAGE", "localhost/postgres-standin:15")
COMPOSE = shlex.split(os.environ.get("COMPOSE", "podman-compose"))  # or "docker compose"
SERVICES = ["postgres", "api1", "api2", "worker"]
API_URLS = ["http://127.0.0.1:8001", "http://127.0.0.1:8002"]


@contextmanager
def upstream_on_all_addresses() -> Iterator[tuple[ScriptedUpstream, int]]:
    upstream = ScriptedUpstream()
    port = free_port()
    config = uvicorn.Config(upstream.app, host="0.0.0.0", port=port, log_level="warning", loop="asyncio")
    server = ThreadedServer(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield upstream, port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def main() -> int:
    if engine("image", "inspect", POSTGRES_IMAGE, check=False).returncode != 0:
        step(f"building {POSTGRES_IMAGE} from deploy/postgres-standin")
        engine("build", "-t", POSTGRES_IMAGE, str(DEPLOY / "postgres-standin"))
    key = f"sk-smoke-{uuid.uuid4().hex}"
    project = f"oasmoke{uuid.uuid4().hex[:6]}"
    with ExitStack() as stack, upstream_on_all_addresses() as (upstream, upstream_port):
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="oa-compose-")))
        shutil.copy(DEPLOY / "compose.yaml", directory)
        shutil.copy(DEPLOY / "Caddyfile", directory)
        (directory / ".env").write_text(
            f"POSTGRES_PASSWORD={uuid.uuid4().hex}\n"
            f"OPENASSISTANTS_API_KEYS={key}\n"
            f"OPENASSISTANTS_LLM_BASE_URL=http://host.containers.internal:{upstream_port}/v1\n"
        )
        env = {**os.environ, "IMAGE": IMAGE, "POSTGRES_IMAGE": POSTGRES_IMAGE}
        compose = [*COMPOSE, "-p", project, "-f", str(directory / "compose.yaml")]

        def down() -> None:
            subprocess.run([*compose, "down", "-v"], env=env, capture_output=True, cwd=directory)
            engine("network", "rm", "-f", f"{project}_default", check=False)  # podman-compose 1.0 leaves it

        stack.callback(down)
        step(
            f"{shlex.join(COMPOSE)} -p {project} up -d {' '.join(SERVICES)} "
            f"(images {IMAGE}, {POSTGRES_IMAGE})"
        )
        up = subprocess.run(
            [*compose, "up", "-d", *SERVICES], env=env, capture_output=True, text=True, cwd=directory
        )
        if up.returncode != 0:
            raise RuntimeError(f"compose up failed: {up.stdout[-1500:]}{up.stderr[-1500:]}")
        running = engine(
            "ps", "--filter", f"label=com.docker.compose.project={project}", "--format", "{{.Names}}"
        )
        step(f"running: {' '.join(sorted(running.stdout.split()))}")
        for url in API_URLS:
            wait_healthy(url, lambda: True)
            step(f"{url}/healthz: 200")
        api1, api2 = (OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=2) for url in API_URLS)
        flow(api1, api2, upstream)
    step("compose OK")
    return 0


def flow(api1: OpenAI, api2: OpenAI, upstream: ScriptedUpstream) -> None:
    uploaded = api1.files.create(file=("numbers.csv", b"n\n4200\n17\n"), purpose="assistants")
    step(f"api1: uploaded {uploaded.id} to the shared volume")
    model = f"smoke-{uuid.uuid4().hex[:8]}"
    assistant = api2.beta.assistants.create(
        model=model,
        tools=[{"type": "code_interpreter"}],
        tool_resources={"code_interpreter": {"file_ids": [uploaded.id]}},
    )
    thread = api2.beta.threads.create(messages=[{"role": "user", "content": "Sum the column."}])
    step(f"api2: assistant {assistant.id}, thread {thread.id}")
    code = "import glob, pandas\nprint(int(pandas.read_csv(glob.glob('/mnt/data/*.csv')[0]).n.sum()))"
    upstream.script(
        model, ToolCalls([("code_interpreter", json.dumps({"code": code}))]), Reply("The sum is 4217.")
    )
    events: list[str] = []
    with api1.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        for event in stream:
            events.append(event.event)
        run = stream.get_final_run()
    step(f"api1: streamed run {run.id}: {run.status}, {len(events)} events, executed by the worker")
    logs = []
    for run_step in api2.beta.threads.runs.steps.list(run.id, thread_id=thread.id):
        if run_step.step_details.type == "tool_calls":
            for call in run_step.step_details.tool_calls:
                if call.type == "code_interpreter":
                    logs += [o.logs for o in call.code_interpreter.outputs if o.type == "logs"]
    step(f"api2: its code_interpreter output, from api1's upload: {' '.join(logs).strip()!r}")
    if run.status != "completed" or "4217" not in " ".join(logs):
        raise RuntimeError(f"compose run: {run.status}, {run.last_error}, {logs}")


if __name__ == "__main__":
    sys.exit(main())
