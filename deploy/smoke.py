"""Release smoke test of the container image, run by deploy/smoke.sh once the image is built.

1. Start-up: the time from `ENGINE run` to the first 200 from /healthz, against the same
   `openassistants serve` started directly on this host (the baseline), alternating, fresh data each time.
2. The sandbox: what `sandbox_problem` says in the container with the engine's defaults (code_interpreter
   then off, and the server says why at start-up) and with the options bubblewrap needs; the image's
   HEALTHCHECK, run by the engine.
3. End to end with the official SDK against the container: an assistant, a thread, a message, a streamed
   run, and a run whose model calls code_interpreter (kernel in bubblewrap, inside the container). The
   model is the test suite's scripted one (tests/upstream.py) on this host; the container shares the
   host's network to reach it.

Every step is printed. Exit status 1 on the first failure.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
from openai import OpenAI

from openassistants.config import Settings
from tests.servers import free_port
from tests.upstream import Reply, ScriptedUpstream, ToolCalls, scripted_upstream

ENGINE = os.environ.get("ENGINE", "podman")
IMAGE = os.environ.get("IMAGE", "localhost/openassistants:dev")
ROUNDS = int(os.environ.get("ROUNDS", "5"))
HEALTHY_TIMEOUT_SECONDS = 180.0
REPO = Path(__file__).resolve().parent.parent
HOST_SERVE = [str(REPO / ".venv" / "bin" / "openassistants"), "serve"]
#: What bubblewrap needs from the engine (docs/deployment.md): namespaces and mounts that the default
#: seccomp profile refuses, and a /proc without the engine's masks over some of its paths.
#: The same three as the worker's security_opt in compose.yaml; podman accepts Docker's names.
SANDBOX_OPTIONS = [
    *("--security-opt", "seccomp=unconfined"),
    *("--security-opt", "apparmor=unconfined"),
    *("--security-opt", "systempaths=unconfined"),
]
PROBE = (
    "from openassistants.code_interpreter.probe import sandbox_problem;"
    "from openassistants.config import Settings;"
    "print(sandbox_problem(Settings()) or 'none: bubblewrap starts a sandbox here')"
)
STARTED = time.monotonic()
# The SDK marks every Assistants method deprecated; this server serves exactly that API.
warnings.filterwarnings("ignore", category=DeprecationWarning)


def step(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.2f}s] {message}", flush=True)


def engine(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([ENGINE, *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"`{ENGINE} {' '.join(args[:2])} ...` failed: {done.stderr.strip()[-800:]}")
    return done


def wait_healthy(url: str, alive: Callable[[], bool]) -> None:
    """Poll /healthz until it answers 200 (a script may poll; it has nothing else to wait on). One client
    for every poll, and whether the server died checked once a second, so that the poller's own CPU
    (a new httpx client per poll builds an SSL context, 20-50 ms each) does not slow the start it times
    on a busy 2-CPU machine: it did, by x2, and unevenly between host and container."""
    deadline = time.monotonic() + HEALTHY_TIMEOUT_SECONDS
    next_alive_check = time.monotonic() + 1.0
    with httpx.Client(timeout=1) as client:
        while time.monotonic() < deadline:
            try:
                if client.get(f"{url}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > next_alive_check:
                if not alive():
                    raise RuntimeError(f"the server behind {url} exited before it was healthy")
                next_alive_check = time.monotonic() + 1.0
            time.sleep(0.05)
    raise RuntimeError(f"{url}/healthz not healthy after {HEALTHY_TIMEOUT_SECONDS:g} s")


class Container:
    """One `ENGINE run -d --rm` of the image; removed on exit."""

    def __init__(self, stack: ExitStack, options: list[str], env: dict[str, str], command: list[str]):
        self.name = f"oa-smoke-{uuid.uuid4().hex[:8]}"
        env_args = [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]
        self.started = time.monotonic()
        engine("run", "-d", "--rm", "--name", self.name, *options, *env_args, IMAGE, *command)
        stack.callback(engine, "rm", "-f", "-v", "-t", "5", self.name, check=False)

    def alive(self) -> bool:
        state = engine("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return state.stdout.strip() == "true"

    def logs(self) -> str:
        done = engine("logs", self.name, check=False)
        return done.stdout + done.stderr


def startup_figures(upstream_url: str) -> None:
    """Median time from start to healthy, host vs container (with the sandbox options, so that both can
    run kernels), ROUNDS of each, alternating: with no warm kernels (the server alone), and with the
    default pool, which the server fills (each kernel imports numpy, pandas, matplotlib) before serving."""
    for pool in ("0", str(Settings().code_interpreter_pool_size)):
        env = {
            "OPENASSISTANTS_API_KEYS": "sk-smoke",
            "OPENASSISTANTS_LLM_BASE_URL": upstream_url,
            "OPENASSISTANTS_CODE_INTERPRETER_POOL_SIZE": pool,
        }
        host_times: list[float] = []
        container_times: list[float] = []
        for round_number in range(1, ROUNDS + 1):
            host_times.append(host_startup(env))
            container_times.append(container_startup(env))
            step(
                f"start-up, pool {pool}, round {round_number}: host {host_times[-1]:.2f} s, "
                f"container {container_times[-1]:.2f} s (run to first healthy /healthz)"
            )
        host, boxed = statistics.median(host_times), statistics.median(container_times)
        step(
            f"start-up, pool {pool}, median of {ROUNDS}: host {host:.2f} s, container {boxed:.2f} s, "
            f"ratio x{boxed / host:.2f}"
        )


def host_startup(env: dict[str, str]) -> float:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="oa-smoke-") as data, ExitStack() as stack:
        started = time.monotonic()
        process = subprocess.Popen(
            [*HOST_SERVE, "--host", "127.0.0.1", "--port", str(port), "--data-dir", data],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(process.wait, 30)
        stack.callback(process.terminate)
        wait_healthy(f"http://127.0.0.1:{port}", lambda: process.poll() is None)
        return time.monotonic() - started


def container_startup(env: dict[str, str]) -> float:
    port = free_port()
    with ExitStack() as stack:
        command = ["serve", "--host", "127.0.0.1", "--port", str(port)]
        container = Container(stack, ["--network", "host", *SANDBOX_OPTIONS], env, command)
        wait_healthy(f"http://127.0.0.1:{port}", container.alive)
        return time.monotonic() - container.started


def sandbox_report() -> None:
    """sandbox_problem with the engine's defaults and with SANDBOX_OPTIONS; the image's HEALTHCHECK."""
    for label, options in (("engine defaults", []), ("sandbox options", SANDBOX_OPTIONS)):
        done = engine("run", "--rm", *options, "--entrypoint", "python3", IMAGE, "-c", PROBE)
        step(f"sandbox_problem with {label} {' '.join(options)}: {done.stdout.strip()}")
    with ExitStack() as stack:
        port = free_port()
        env = {"OPENASSISTANTS_API_KEYS": "sk-smoke"}
        container = Container(stack, ["-p", f"127.0.0.1:{port}:8000"], env, [])
        wait_healthy(f"http://127.0.0.1:{port}", container.alive)
        step(f"default container (CMD serve --host 0.0.0.0 --port 8000, published on :{port}) healthy")
        lines = [line for line in container.logs().splitlines() if "sandbox" in line or "code_interp" in line]
        for line in lines:
            step(f"  its start-up log: {line.strip()[:300]}")
        health = engine("healthcheck", "run", container.name, check=False)
        verdict = "healthy" if health.returncode == 0 else f"UNHEALTHY ({health.stdout}{health.stderr})"
        step(f"`{ENGINE} healthcheck run` (the image's HEALTHCHECK): {verdict}")
        if health.returncode != 0:
            raise RuntimeError("the image's HEALTHCHECK failed")


def sdk_flow(upstream_url: str, upstream: ScriptedUpstream) -> None:
    """Assistant, thread, message, a streamed run and a code_interpreter run, via the official SDK,
    against a container with the sandbox options; then a code_interpreter run without them."""
    with ExitStack() as stack:
        client = host_network_container(stack, upstream_url, SANDBOX_OPTIONS, "sandboxed")
        model = f"smoke-{uuid.uuid4().hex[:8]}"
        assistant = client.beta.assistants.create(
            model=model, name="smoke", instructions="Be brief.", tools=[{"type": "code_interpreter"}]
        )
        step(f"assistant {assistant.id} (model {model}, tools: code_interpreter)")
        thread = client.beta.threads.create()
        step(f"thread {thread.id}")
        message = client.beta.threads.messages.create(thread.id, role="user", content="hello, container")
        step(f"message {message.id}: {message.content[0].text.value!r}")

        upstream.script(model, Reply("Hello from the scripted model, through the container."))
        events: list[str] = []
        with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
            for event in stream:
                events.append(event.event)
            run = stream.get_final_run()
            text = "".join(part.text.value for part in stream.get_final_messages()[0].content)
        step(f"streamed run {run.id}: {run.status}, {len(events)} events ({events[0]} ... {events[-1]})")
        step(f"  reply: {text!r}")
        if run.status != "completed":
            raise RuntimeError(f"streamed run ended {run.status}")

        logs = code_interpreter_run(client, upstream, model, thread.id, assistant.id)
        step(f"  code_interpreter output (kernel in bubblewrap): {logs!r}")
        if not logs.startswith("42 "):
            raise RuntimeError(f"unexpected code_interpreter output: {logs!r}")
        messages = client.beta.threads.messages.list(thread.id, order="asc")
        last = messages.data[-1].content[0].text.value
        step(f"thread holds {len(messages.data)} messages; the last: {last!r}")
        client.beta.assistants.delete(assistant.id)
        step("assistant deleted; end to end OK")

    with ExitStack() as stack:
        client = host_network_container(stack, upstream_url, [], "engine defaults (no sandbox)")
        model = f"smoke-{uuid.uuid4().hex[:8]}"
        assistant = client.beta.assistants.create(model=model, tools=[{"type": "code_interpreter"}])
        thread = client.beta.threads.create()
        code_interpreter_run(client, upstream, model, thread.id, assistant.id)
        tool_messages = [m for m in upstream.requests(model)[-1]["messages"] if m.get("role") == "tool"]
        step(f"  what the model was told: {tool_messages[-1]['content'][:240]!r}")


def host_network_container(stack: ExitStack, upstream_url: str, options: list[str], label: str) -> OpenAI:
    key = f"sk-smoke-{uuid.uuid4().hex}"
    port = free_port()
    env = {"OPENASSISTANTS_API_KEYS": key, "OPENASSISTANTS_LLM_BASE_URL": upstream_url}
    volume = f"oa-smoke-{uuid.uuid4().hex[:8]}"
    stack.callback(engine, "volume", "rm", "-f", volume, check=False)
    command = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    container = Container(stack, ["--network", "host", "-v", f"{volume}:/data", *options], env, command)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, container.alive)
    step(f"container {container.name} ({label}) healthy at {url}")
    return OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def code_interpreter_run(
    client: OpenAI, upstream: ScriptedUpstream, model: str, thread_id: str, assistant_id: str
) -> str:
    """A run whose model calls code_interpreter, then answers; the call's logs output."""
    code = "import os, socket\nprint(6 * 7, 'uid', os.getuid(), 'host', socket.gethostname())"
    upstream.script(
        model, ToolCalls([("code_interpreter", json.dumps({"code": code}))]), Reply("6 times 7 is 42.")
    )
    client.beta.threads.messages.create(thread_id, role="user", content="What is 6 times 7? Use Python.")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, poll_interval_ms=200
    )
    step(f"code_interpreter run {run.id}: {run.status}")
    if run.status != "completed":
        raise RuntimeError(f"code_interpreter run ended {run.status}: {run.last_error}")
    logs = []
    for run_step in client.beta.threads.runs.steps.list(run.id, thread_id=thread_id, order="asc"):
        if run_step.step_details.type == "tool_calls":
            for call in run_step.step_details.tool_calls:
                if call.type == "code_interpreter":
                    logs += [o.logs for o in call.code_interpreter.outputs if o.type == "logs"]
    return " ".join(logs).strip()


def main() -> int:
    step(f"engine {ENGINE}, image {IMAGE}")
    size = engine("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip()
    step(f"image size: {int(size) / 1e6:.0f} MB")
    load = os.getloadavg()
    step(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs")
    with scripted_upstream() as upstream:
        step(f"scripted model upstream at {upstream.url}")
        startup_figures(upstream.url)
        sandbox_report()
        sdk_flow(upstream.url, upstream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
