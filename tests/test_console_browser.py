"""The web console in a real headless Chromium against a real server and the scripted model: create an
assistant, chat with a streamed reply, answer a function call, cite an uploaded file, and the key.

One server (SQLite: the console is a client of the public API, which the rest of the suite runs on both
databases) and one browser for the module; each test gets a fresh browser profile.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import openai
import pytest
from playwright.async_api import Browser, Page, Route, expect

from tests.conftest import TENANT_A_KEY, Server
from tests.console_browser import PageErrors, launched_chromium, new_context, require_chromium
from tests.servers import make_settings, running_server
from tests.upstream import Fail, Reply, ScriptedUpstream, ToolCalls

CHROMIUM = require_chromium()
FACT = "Island notes\n\nThe lighthouse keeper on Skerry Island feeds exactly seventeen cats every morning."
MARKER = "【0:0†island.md】"
# A model name the server routes, so /v1/models lists it whatever the upstream's list was when cached.
ROUTED_MODEL = "house-model"
# Generous: the machine is shared and ingestion embeds on the CPU; a pass takes far less.
TIMEOUT_MS = 60_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def console_server(upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("console")
    settings = make_settings(
        str(data_dir),
        None,
        llm_base_url=upstream.url,
        llm_retry_backoff_seconds=0.01,
        llm_routes=json.dumps({ROUTED_MODEL: {"base_url": upstream.url}}),
    )
    with running_server(settings) as url:
        yield Server(url=url, backend="sqlite")


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launched_chromium(CHROMIUM) as launched:
        yield launched


@pytest.fixture
async def sdk(console_server: Server) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=console_server.base_url, api_key=TENANT_A_KEY, max_retries=0) as c:
        yield c


async def open_page(browser: Browser, server: Server, api_key: str | None = TENANT_A_KEY) -> Page:
    context = await new_context(browser, server.url, api_key)
    context.set_default_timeout(TIMEOUT_MS)
    return await context.new_page()


@pytest.fixture
async def page(browser: Browser, console_server: Server) -> AsyncIterator[Page]:
    page = await open_page(browser, console_server)
    errors = PageErrors(page)
    yield page
    await page.context.close()
    errors.assert_none()


async def test_the_page_creates_an_assistant_with_tools_and_metadata(
    page: Page, sdk: openai.AsyncOpenAI, model: str
) -> None:
    name = f"Weather {uuid.uuid4().hex[:6]}"
    await page.goto("/#/assistants/new")
    await page.get_by_label("Name", exact=True).fill(name)
    await page.get_by_label("Model").fill(model)
    await page.get_by_label("Instructions").fill("Answer about the weather.")
    await page.get_by_label("Code interpreter", exact=True).check()
    await page.get_by_role("button", name="Add function").click()
    await page.get_by_label("Function name").fill("get_weather")
    await page.get_by_label("Parameters (JSON schema)").fill(
        '{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}'
    )
    await page.get_by_role("button", name="Add metadata").click()
    await page.get_by_label("Metadata key").fill("team")
    await page.get_by_label("Metadata value").fill("console")
    await page.get_by_role("button", name="Create assistant").click()
    await expect(page.get_by_role("heading", name=f"Edit {name}")).to_be_visible()
    await expect(page.get_by_role("link", name=name)).to_be_visible()

    [created] = [a async for a in sdk.beta.assistants.list(limit=100) if a.name == name]
    assert created.model == model and created.instructions == "Answer about the weather."
    assert [t.type for t in created.tools] == ["code_interpreter", "function"]
    function = created.tools[1].function  # type: ignore[union-attr]
    assert function.name == "get_weather" and function.parameters["required"] == ["city"]  # type: ignore[index]
    assert created.metadata == {"team": "console"}

    # Invalid JSON never reaches the server: the page says what is wrong.
    await page.get_by_label("Parameters (JSON schema)").fill("{not json")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("alert")).to_contain_text("not valid JSON")


async def test_chat_streams_a_function_call_takes_its_output_and_completes(
    page: Page, sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    reply = "It is sunny in Paris, 21 degrees."
    upstream.script(
        model,
        ToolCalls([("get_weather", '{"city": "Paris"}')]),
        Reply(reply, delay=0.05),
    )
    parameters: dict[str, object] = {"type": "object", "properties": {"city": {"type": "string"}}}
    assistant = await sdk.beta.assistants.create(
        model=model,
        name="Weather",
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": parameters}}],
    )
    # Every text the reply showed, as it changed: streaming shows it growing, not all at once.
    await page.add_init_script(
        """
        window.seenTexts = [];
        new MutationObserver(() => {
          const text = document.querySelector('.message.role-assistant .text');
          if (text && window.seenTexts.at(-1) !== text.textContent) window.seenTexts.push(text.textContent);
        }).observe(document, {subtree: true, childList: true, characterData: true});
        """
    )
    await page.goto(f"/#/chat?assistant={assistant.id}")
    composer = page.get_by_label("Message", exact=True)
    await composer.fill("Weather in Paris?")
    await composer.press("Shift+Enter")  # a new line, not a send
    await composer.press_sequentially("Thanks")
    await composer.press("Enter")

    form = page.locator("#required-action form")
    await expect(form).to_contain_text("get_weather")
    await expect(form).to_contain_text('"city": "Paris"')
    await expect(page.locator("#run-status")).to_contain_text("requires_action")
    await expect(page.locator("#steps")).to_contain_text("get_weather")
    await page.get_by_label("Output of get_weather").fill('{"sky": "sunny", "celsius": 21}')
    await page.get_by_role("button", name="Submit outputs").click()

    await expect(page.locator(".message.role-assistant")).to_contain_text(reply)
    await expect(page.locator("#run-status")).to_contain_text("completed")
    await expect(page.locator("#run-status")).to_contain_text("tokens")
    await expect(page.locator("#steps .tool-call.function")).to_contain_text(
        '{"sky": "sunny", "celsius": 21}'
    )
    seen: list[str] = await page.evaluate("window.seenTexts")
    partial = [text for text in seen if text and text != reply and reply.startswith(text)]
    assert partial, f"the reply appeared all at once, not streamed: {seen}"

    thread_id = page.url.split("thread=")[1]
    messages = [m async for m in sdk.beta.threads.messages.list(thread_id, order="asc")]
    assert messages[0].content[0].text.value == "Weather in Paris?\nThanks"  # type: ignore[union-attr]
    [run] = [r async for r in sdk.beta.threads.runs.list(thread_id)]
    assert run.status == "completed"
    tool_message = upstream.requests(model)[1]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["content"] == '{"sky": "sunny", "celsius": 21}'

    # The thread is listed, on the server and as started in this browser.
    await page.get_by_role("link", name="Threads").click()
    await expect(page.locator(f'#thread-list li[data-thread-id="{thread_id}"]')).to_contain_text(
        "Weather in Paris?"
    )
    await expect(page.locator(f'#local-threads li[data-thread-id="{thread_id}"]')).to_contain_text(
        "Weather in Paris?"
    )
    # Opening it again shows its messages and the run with its usage.
    await page.locator(f'#local-threads li[data-thread-id="{thread_id}"] a').click()
    await expect(page.locator(".message.role-assistant")).to_contain_text(reply)
    await expect(page.locator("#runs")).to_contain_text("tokens")


async def test_an_output_typed_while_the_run_is_shown_again_is_kept(
    page: Page, sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    """Once a stream settles the page fetches the run again and shows it; the outputs form of the same
    calls must survive that, with what was typed into it (it was drawn anew, empty, on a loaded machine
    the fetch lands after the typing)."""
    upstream.script(model, ToolCalls([("get_weather", '{"city": "Oslo"}')]), Reply("Cold."))
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    assistant = await sdk.beta.assistants.create(model=model, tools=[tool])  # type: ignore[list-item]
    # Hold back the page's fetch of the run until the output has been typed.
    typed = asyncio.Event()

    async def hold_run_fetch(route: Route) -> None:
        if route.request.method == "GET":
            await typed.wait()
        await route.continue_()

    await page.route(re.compile(r".*/v1/threads/[^/]+/runs/run_[^/?]+$"), hold_run_fetch)
    await page.goto(f"/#/chat?assistant={assistant.id}")
    await page.get_by_label("Message", exact=True).fill("Weather in Oslo?")
    await page.get_by_label("Message", exact=True).press("Enter")
    output = page.get_by_label("Output of get_weather")
    await output.fill('{"celsius": -3}')
    async with page.expect_response(lambda response: "/steps" in response.url):
        typed.set()  # the page now shows the run again, then its steps
    await expect(output).to_have_value('{"celsius": -3}')
    await page.get_by_role("button", name="Submit outputs").click()
    await expect(page.locator("#run-status")).to_contain_text("completed")

    thread_id = page.url.split("thread=")[1]
    [run] = [r async for r in sdk.beta.threads.runs.list(thread_id)]
    steps = [s async for s in sdk.beta.threads.runs.steps.list(run.id, thread_id=thread_id, order="asc")]
    [call] = steps[0].step_details.tool_calls  # type: ignore[union-attr]
    assert call.function.output == '{"celsius": -3}'  # type: ignore[union-attr]


async def test_opening_a_thread_mid_run_follows_the_rest_of_its_stream(
    page: Page, sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    reply = "A slow and steady answer, streamed while the page was away."
    upstream.script(model, Reply(reply, first_delay=1.0, delay=0.05))
    assistant = await sdk.beta.assistants.create(model=model, name="Slow")
    thread = await sdk.beta.threads.create(messages=[{"role": "user", "content": "Take your time."}])
    run = await sdk.beta.threads.runs.create(thread.id, assistant_id=assistant.id)  # not streamed

    # The page finds the run active and follows its events (GET …/events), from the first one.
    await page.goto(f"/#/chat?thread={thread.id}")
    await expect(page.get_by_label("Assistant", exact=True)).to_have_value(assistant.id)
    await expect(page.locator(".message.role-assistant")).to_contain_text(reply)
    await expect(page.locator("#run-status")).to_contain_text("completed")
    await expect(page.locator(f'#runs li[data-run-id="{run.id}"]')).to_contain_text("tokens")


@pytest.mark.skipif(
    shutil.which("bwrap") is None and not os.environ.get("OPENASSISTANTS_TEST_REQUIRE_POSTGRES"),
    reason="bubblewrap (bwrap) is not installed: the code interpreter cannot run",
)
async def test_code_interpreter_input_logs_image_and_written_file(
    page: Page, sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "print(sum([1, 2, 3]))\n"
        "open('/mnt/data/squares.csv', 'w').write('n,sq\\n2,4\\n')\n"
        "_ = plt.plot([1, 2, 3], [1, 4, 9])\n"
    )
    arguments = json.dumps({"code": code})
    reply = "The sum is 6; the table: [squares](sandbox:/mnt/data/squares.csv)"
    upstream.script(model, ToolCalls([("code_interpreter", arguments)]), Reply(reply))
    assistant = await sdk.beta.assistants.create(
        model=model, name="Analyst", tools=[{"type": "code_interpreter"}]
    )
    await page.goto(f"/#/chat?assistant={assistant.id}")
    await page.get_by_label("Message", exact=True).fill("Sum and plot, please.")
    await page.get_by_label("Message", exact=True).press("Enter")

    call = page.locator("#steps .code-interpreter")
    await expect(call).to_contain_text("print(sum([1, 2, 3]))")
    await expect(call.locator("pre.output")).to_contain_text("6")
    image = call.locator("img.file-image")
    await expect(image).to_be_visible()
    # Fetched with the key, then shown from a blob: URL once it arrives.
    await page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=await image.element_handle()
    )
    message = page.locator(".message.role-assistant")
    await expect(message).to_contain_text("The sum is 6; the table:")
    async with page.expect_download() as download_info:
        await message.get_by_role("button", name="squares.csv").click()
    assert Path(await (await download_info.value).path()).read_text() == "n,sq\n2,4\n"


async def test_uploaded_file_is_ingested_and_cited_as_a_downloadable_footnote(
    page: Page, sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str, tmp_path: Path
) -> None:
    island = tmp_path / "island.md"
    island.write_text(FACT)
    store_name = f"Handbook {uuid.uuid4().hex[:6]}"

    await page.goto("/#/vector-stores")
    await page.get_by_label("New store name").fill(store_name)
    await page.get_by_role("button", name="Create").click()
    await expect(page.get_by_role("heading", name=store_name)).to_be_visible()
    await page.get_by_label("Or upload new files").set_input_files(island)
    await page.get_by_role("button", name="Add to store").click()
    row = page.locator("#store-files tbody tr")
    await expect(row).to_contain_text("island.md")
    await expect(row).to_contain_text("completed")  # polled until ingestion finished
    await expect(page.locator("#store-progress")).to_contain_text("1 of 1 done")
    [store] = [s async for s in sdk.vector_stores.list(limit=100) if s.name == store_name]
    # The list beside it followed the ingestion: the file counted, its size, the store completed.
    listed = page.locator(f'#vector-store-list li[data-store-id="{store.id}"]')
    await expect(listed).to_contain_text("1 files")
    await expect(listed).to_contain_text("completed")
    assert store.usage_bytes > 0
    await expect(listed).not_to_contain_text(" 0 B")

    upstream.script(
        model,
        ToolCalls([("file_search", '{"query": "cats on the island"}')]),
        Reply(f"Seventeen cats{MARKER}."),
    )
    # The assistant is made in the page too: file_search, with the store as its tool resource.
    await page.get_by_role("link", name="Assistants", exact=True).click()
    await page.get_by_role("button", name="New assistant").click()
    await page.get_by_label("Name", exact=True).fill("Librarian")
    await page.get_by_label("Model").fill(model)
    await page.get_by_label("File search", exact=True).check()
    await page.get_by_label("File search vector stores").select_option(store.id)
    await page.get_by_role("button", name="Create assistant").click()
    await expect(page.get_by_role("heading", name="Edit Librarian")).to_be_visible()
    assistant = await sdk.beta.assistants.retrieve(page.url.rsplit("/", 1)[1])
    assert assistant.tool_resources is not None and assistant.tool_resources.file_search is not None
    assert assistant.tool_resources.file_search.vector_store_ids == [store.id]
    await page.get_by_role("form", name="Edit Librarian").get_by_role("link", name="Chat").click()
    await expect(page.get_by_label("Assistant", exact=True)).to_have_value(assistant.id)
    await page.get_by_label("Message", exact=True).fill("How many cats?")
    await page.get_by_role("button", name="Send").click()

    message = page.locator(".message.role-assistant")
    await expect(message).to_contain_text("Seventeen cats[1].")
    await expect(message.locator(".sources")).to_contain_text("island.md")
    await expect(page.locator("#steps .file-search")).to_contain_text("island.md")
    await expect(page.locator("#steps .file-search")).to_contain_text("seventeen cats")  # result content

    await message.get_by_role("link", name="Source 1").click()
    await expect(message.locator(".footnotes li").first).to_be_focused()
    async with page.expect_download() as download_info:
        await message.locator(".sources").get_by_role("button", name="Download").click()
    download = await download_info.value
    assert download.suggested_filename == "island.md"
    assert Path(await download.path()).read_text() == FACT


async def test_without_a_key_data_calls_fail_cleanly_and_the_key_works(
    browser: Browser, console_server: Server
) -> None:
    page = await open_page(browser, console_server, api_key=None)
    errors = PageErrors(page)
    refused: list[int] = []
    page.on("response", lambda r: refused.append(r.status) if "/v1/" in r.url and r.status == 401 else None)

    await page.goto("/")
    await expect(page.get_by_role("heading", name="API key")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("needs an API key")
    assert refused, "the page made no keyless data call"

    await page.get_by_role("textbox", name="API key").fill("sk-wrong-key-123456")
    await page.get_by_role("button", name="Use this key").click()
    await expect(page.get_by_role("alert")).to_contain_text(
        "That key was refused: Incorrect API key provided"
    )
    assert await page.evaluate("localStorage.getItem('openassistants.apiKey')") is None

    await page.get_by_role("textbox", name="API key").fill(TENANT_A_KEY)
    await page.get_by_role("textbox", name="API key").press("Enter")
    await expect(page.get_by_role("heading", name="Assistants")).to_be_visible()
    assert await page.evaluate("localStorage.getItem('openassistants.apiKey')") == TENANT_A_KEY
    # The key is remembered: a new load goes straight to the data.
    await page.reload()
    await expect(page.get_by_role("heading", name="Assistants")).to_be_visible()
    await page.context.close()
    errors.assert_none()


async def test_theme_toggle_and_keyboard_focus(page: Page) -> None:
    await page.goto("/")
    await expect(page.get_by_role("heading", name="Assistants")).to_be_visible()
    toggle = page.locator("#theme-toggle")
    light_bg = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    await toggle.click()  # system -> light
    await toggle.click()  # light -> dark
    assert await page.evaluate("document.documentElement.dataset.theme") == "dark"
    dark_bg = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert dark_bg != light_bg
    await page.reload()
    assert await page.evaluate("document.documentElement.dataset.theme") == "dark"

    # The first Tab reaches the skip link, and focus is drawn visibly.
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    await expect(skip).to_be_focused()
    outline = await skip.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline != "none"


async def test_files_upload_download_and_delete(page: Page, sdk: openai.AsyncOpenAI, tmp_path: Path) -> None:
    notes = tmp_path / f"notes-{uuid.uuid4().hex[:6]}.txt"
    notes.write_text("ferry at nine")
    await page.goto("/#/files")
    await page.get_by_label("Files to upload").set_input_files(notes)
    await page.get_by_role("button", name="Upload", exact=True).click()
    row = page.locator("#files tbody tr", has_text=notes.name)
    await expect(row).to_contain_text("assistants")
    file_id = await row.get_attribute("data-file-id")
    assert file_id is not None and (await sdk.files.retrieve(file_id)).filename == notes.name

    async with page.expect_download() as download_info:
        await row.get_by_role("button", name="Download").click()
    assert Path(await (await download_info.value).path()).read_text() == "ferry at nine"

    page.once("dialog", lambda dialog: dialog.accept())
    await row.get_by_role("button", name=f"Delete {notes.name}").click()
    await expect(row).to_have_count(0)
    with pytest.raises(openai.NotFoundError):
        await sdk.files.retrieve(file_id)


async def test_event_stream_parser(page: Page) -> None:
    """The page's SSE parser on the HTML standard's edge cases: CRLF and CR line ends, comments, multi-line
    data, ids, and events split anywhere across reads."""
    await page.goto("/")
    events = await page.evaluate(
        """async () => {
          const { parseEventStream } = await import('/console/js/sse.js');
          const text = ': hello\\r\\nevent: thread.run.created\\r\\nid: 7\\r\\n'
            + 'data: {"a":\\r\\ndata:1}\\r\\n\\r\\n'
            + 'data: plain\\r\\rdata: x\\n\\nevent: done\\ndata: [DONE]\\n\\n';
          const bytes = new TextEncoder().encode(text);
          const body = new ReadableStream({
            start(controller) {
              for (let i = 0; i < bytes.length; i += 3) controller.enqueue(bytes.slice(i, i + 3));
              controller.close();
            },
          });
          const seen = [];
          for await (const event of parseEventStream(body)) seen.push(event);
          return seen;
        }"""
    )
    assert events == [
        {"event": "thread.run.created", "data": '{"a":\n1}', "id": "7"},
        {"event": "message", "data": "plain", "id": "7"},
        {"event": "message", "data": "x", "id": "7"},
        {"event": "done", "data": "[DONE]", "id": "7"},
    ]


HOSTILE_MARKDOWN = (
    "## Findings\n\n"
    "**Bold claim** with `inline code` and a [safe link](https://example.com/docs).\n\n"
    "```python\nprint('copied')\n```\n\n"
    "<script>window.pwned = 'script'</script>\n\n"
    "<img src=x onerror=\"window.pwned = 'img'\">\n\n"
    "[click me](javascript:window.pwned='link')\n\n"
    "<a href=\"javascript:window.pwned='a'\">raw link</a>\n\n"
    "<svg onload=\"window.pwned = 'svg'\"></svg>"
)


async def test_replies_render_as_markdown_and_hostile_output_stays_inert(
    page: Page, sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply(HOSTILE_MARKDOWN))
    assistant = await sdk.beta.assistants.create(model=model, name="Writer")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await page.goto(f"/#/chat?assistant={assistant.id}")
    await page.get_by_label("Message", exact=True).fill("Report, please.")
    await page.get_by_label("Message", exact=True).press("Enter")

    text = page.locator(".message.role-assistant .text.markdown")
    await expect(text.locator("h2")).to_have_text("Findings")
    await expect(text.locator("strong")).to_have_text("Bold claim")
    await expect(text.locator("code").first).to_have_text("inline code")
    link = text.get_by_role("link", name="safe link")
    assert await link.get_attribute("href") == "https://example.com/docs"
    assert await link.get_attribute("rel") == "noopener noreferrer nofollow"
    # The hostile parts are shown as text, never as elements.
    await expect(text).to_contain_text("<script>window.pwned = 'script'</script>")
    for selector in ("script", "img", "svg", "iframe", "[onerror]", "[onload]", 'a[href^="javascript"]'):
        await expect(text.locator(selector)).to_have_count(0)
    assert await page.evaluate("window.pwned") is None
    assert dialogs == []

    # Code blocks get a copy button that puts the code on the clipboard.
    block = text.locator(".code-block")
    await block.get_by_role("button", name="Copy code").click()
    await expect(block.get_by_role("button", name="Copy code")).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == "print('copied')\n"

    # Markdown survives a reload: messages loaded from the server render the same way.
    await page.reload()
    await expect(page.locator(".message.role-assistant .text.markdown h2")).to_have_text("Findings")


async def test_a_message_carries_attachments_for_the_chosen_tools(
    page: Page, sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str, tmp_path: Path
) -> None:
    upstream.script(model, Reply("Noted."))
    assistant = await sdk.beta.assistants.create(
        model=model, name="Reader", tools=[{"type": "file_search"}, {"type": "code_interpreter"}]
    )
    notes = tmp_path / f"notes-{uuid.uuid4().hex[:6]}.csv"
    notes.write_text("a,b\n1,2\n")
    await page.goto(f"/#/chat?assistant={assistant.id}")
    await page.get_by_label("Attach files").set_input_files(notes)
    await page.get_by_label("for code interpreter").check()
    await page.get_by_label("Message", exact=True).fill("Read the attached table.")
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator(".message.role-assistant")).to_contain_text("Noted.")
    user_message = page.locator(".message.role-user")
    await expect(user_message.locator(".attachments")).to_contain_text(notes.name)

    thread_id = page.url.split("thread=")[1]
    [message] = [m async for m in sdk.beta.threads.messages.list(thread_id) if m.role == "user"]
    [attachment] = message.attachments or []
    assert sorted(tool.type for tool in attachment.tools or []) == ["code_interpreter", "file_search"]
    assert attachment.file_id is not None
    assert (await sdk.files.retrieve(attachment.file_id)).filename == notes.name


async def test_a_failed_run_says_why_in_the_conversation(
    page: Page, sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Fail(status=400, message="this model does not exist here"))
    assistant = await sdk.beta.assistants.create(model=model, name="Broken")
    await page.goto(f"/#/chat?assistant={assistant.id}")
    await page.get_by_label("Message", exact=True).fill("Hello?")
    await page.get_by_label("Message", exact=True).press("Enter")
    error = page.locator("#messages .run-error")
    await expect(error).to_contain_text("Run failed")
    await expect(error).to_contain_text("this model does not exist here")
    # Opened again later, the thread still says it.
    await page.reload()
    await expect(page.locator("#messages .run-error")).to_contain_text("Run failed")


async def test_the_chat_uses_the_windows_height(page: Page) -> None:
    heights = []
    for height in (700, 1100):
        await page.set_viewport_size({"width": 1280, "height": height})
        await page.goto("/#/chat")
        await expect(page.locator("#messages")).to_be_visible()
        box = await page.locator("#messages").bounding_box()
        send = await page.locator("#send").bounding_box()
        assert box is not None and send is not None
        assert send["y"] + send["height"] <= height  # the composer stays in view
        heights.append(box["height"])
    # 400 more pixels of window give the conversation (nearly) all of them.
    assert heights[1] - heights[0] >= 350, heights


async def test_threads_are_listed_with_their_first_message(page: Page, sdk: openai.AsyncOpenAI) -> None:
    first = f"Plan the ferry timetable for {uuid.uuid4().hex[:6]}"
    thread = await sdk.beta.threads.create(messages=[{"role": "user", "content": first}])
    await page.goto("/#/threads")
    item = page.locator(f'#thread-list li[data-thread-id="{thread.id}"]')
    await expect(item.locator(".thread-preview")).to_have_text(first)


async def test_the_model_picker_offers_the_servers_models_and_sampling_settings_are_saved(
    page: Page, sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    listed = [m.id async for m in sdk.models.list()]
    assert ROUTED_MODEL in listed
    await page.goto("/#/assistants/new")
    options = page.locator("#model-options option")
    await expect(options.first).to_be_attached()
    values = await options.evaluate_all("os => os.map(o => o.value)")
    assert sorted(values) == sorted(listed)
    assert await page.get_by_label("Model").get_attribute("list") == "model-options"

    name = f"Tuned {uuid.uuid4().hex[:6]}"
    await page.get_by_label("Name", exact=True).fill(name)
    await page.get_by_label("Model").fill(model)
    await page.get_by_label("Temperature").fill("0.3")
    await page.get_by_label("Top P").fill("0.9")
    await page.get_by_label("Response format").select_option("json_schema")
    await page.get_by_label("Schema name").fill("answer")
    await page.get_by_label("JSON schema").fill(
        '{"type": "object", "properties": {"x": {"type": "integer"}}}'
    )
    await page.get_by_label("Strict").check()
    await page.get_by_role("button", name="Create assistant").click()
    await expect(page.get_by_role("heading", name=f"Edit {name}")).to_be_visible()

    [created] = [a async for a in sdk.beta.assistants.list(limit=100) if a.name == name]
    assert created.temperature == 0.3 and created.top_p == 0.9
    response_format = created.response_format
    assert response_format is not None and not isinstance(response_format, str)
    assert response_format.type == "json_schema"
    assert response_format.json_schema.name == "answer"  # type: ignore[union-attr]
    assert response_format.json_schema.strict is True  # type: ignore[union-attr]
    # Shown again as saved.
    await expect(page.get_by_label("Temperature")).to_have_value("0.3")
    await expect(page.get_by_label("Response format")).to_have_value("json_schema")
