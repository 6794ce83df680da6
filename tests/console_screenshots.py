"""Screenshots of the web console's main screens, light and dark, for the README.

    python -m tests.console_screenshots [--out docs/screenshots]

Starts the scripted model and a server (SQLite, in a temporary directory), creates the data through the
API, drives headless Chromium through the console as a user would, and saves PNGs.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import openai
from playwright.async_api import Browser, Page, expect

from tests.conftest import TENANT_A_KEY
from tests.console_browser import launched_chromium, new_context, require_chromium
from tests.servers import make_settings, running_server
from tests.upstream import Reply, ScriptedUpstream, ToolCalls, scripted_upstream

ROOT = Path(__file__).resolve().parent.parent
HANDBOOK = {
    "island.md": "# Island notes\n\nThe lighthouse keeper on Skerry Island feeds exactly seventeen cats "
    "every morning, before the ferry arrives at nine.",
    "ferry.txt": "The ferry to Skerry Island leaves the harbour at 07:30 and returns at 16:00, "
    "weather permitting.",
    "tides.csv": "day,high,low\nMonday,06:12,12:25\nTuesday,06:58,13:10\nWednesday,07:45,13:58\n",
}
WEATHER_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "City name"}},
    "required": ["city"],
}
expect.set_options(timeout=60_000)


async def seed(client: openai.AsyncOpenAI, model: str) -> dict[str, str]:
    """Two assistants and a vector store (three files ingested, one that fails), as a user would have."""
    ids = [
        (await client.files.create(file=(name, text.encode()), purpose="assistants")).id
        for name, text in HANDBOOK.items()
    ]
    broken = await client.files.create(file=("scan.pdf", b"%PDF-1.7 not really a pdf"), purpose="assistants")
    store = await client.vector_stores.create(name="Skerry handbook")
    await client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=[*ids, broken.id]
    )
    librarian = await client.beta.assistants.create(
        model=model,
        name="Librarian",
        instructions="Answer from the handbook and cite your sources.",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
        metadata={"team": "ferry-office"},
    )
    weather = await client.beta.assistants.create(
        model=model,
        name="Weather desk",
        description="Checks the weather before the ferry leaves.",
        instructions="Use get_weather for any question about the weather, then answer in one sentence.",
        tools=[
            {"type": "code_interpreter"},
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "parameters": WEATHER_SCHEMA,
                },
            },
        ],
        metadata={"owner": "harbour-master"},
    )
    return {"store": store.id, "librarian": librarian.id, "weather": weather.id}


async def shoot(page: Page, out: Path, name: str, *, full_page: bool = False) -> None:
    await page.wait_for_load_state("networkidle")
    await page.screenshot(path=str(out / f"{name}.png"), full_page=full_page)
    print(f"wrote {out / name}.png")


async def screens(
    browser: Browser, base_url: str, upstream: ScriptedUpstream, out: Path, theme: str, scratch: Path
) -> None:
    # The scripted model plays any name; one that reads like a real deployment's.
    model = "llama3.1-8b-instruct"
    async with openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=TENANT_A_KEY, max_retries=0) as client:
        ids = await seed(client, model)
    context = await new_context(browser, base_url, TENANT_A_KEY, color_scheme=theme, viewport=(1280, 820))
    context.set_default_timeout(60_000)
    page = await context.new_page()

    await page.goto(f"/#/assistants/{ids['weather']}")
    await expect(page.get_by_role("heading", name="Edit Weather desk")).to_be_visible()
    await shoot(page, out, f"assistants-{theme}", full_page=True)

    upstream.script(
        model,
        ToolCalls([("file_search", '{"query": "how many cats does the keeper feed"}')]),
        Reply(
            "The lighthouse keeper feeds exactly **seventeen cats** every morning【0:0†island.md】.\n\n"
            "| when | what |\n|---|---|\n| morning | the cats are fed |\n| 09:00 | the ferry arrives |\n\n"
            "```python\ncats = 17\n```",
            delay=0.02,
        ),
        ToolCalls([("get_weather", '{"city": "Skerry Island"}')]),
        Reply("Light rain and 14 °C on Skerry Island: the 07:30 ferry should run.", delay=0.02),
    )
    await page.goto(f"/#/chat?assistant={ids['librarian']}")
    await page.get_by_label("Message", exact=True).fill("How many cats does the lighthouse keeper feed?")
    await page.get_by_label("Message", exact=True).press("Enter")
    await expect(page.locator(".message.role-assistant .sources")).to_contain_text("island.md")
    await expect(page.locator(".message.role-assistant .text.markdown table")).to_be_visible()
    await expect(page.locator("#run-status")).to_contain_text("completed")
    await expect(page.locator("#steps .file-search blockquote").first).to_be_visible()
    await shoot(page, out, f"chat-citation-{theme}")

    await page.goto(f"/#/chat?assistant={ids['weather']}")
    await page.get_by_label("Message", exact=True).fill(
        "Will the ferry run? What's the weather on Skerry Island?"
    )
    await page.get_by_label("Message", exact=True).press("Enter")
    await expect(page.locator("#required-action form")).to_contain_text("get_weather")
    await page.get_by_label("Output of get_weather").fill(
        '{"sky": "light rain", "celsius": 14, "wind_kmh": 22}'
    )
    await shoot(page, out, f"requires-action-{theme}")
    await page.get_by_role("button", name="Submit outputs").click()
    await expect(page.locator("#run-status")).to_contain_text("completed")
    await expect(page.locator("#steps .tool-call.function")).to_contain_text("light rain")
    await page.locator(".run-panel").scroll_into_view_if_needed()
    await shoot(page, out, f"run-steps-{theme}")

    await page.goto(f"/#/vector-stores/{ids['store']}")
    await expect(page.locator("#store-progress")).to_contain_text("4 of 4 done")
    # A long file takes the local embedder a few seconds: the page polls its progress meanwhile.
    logbook = scratch / "logbook.txt"
    logbook.write_text(
        "\n".join(
            f"Day {n}: the ferry ran, the keeper fed the cats, the tide was {n % 7} m." for n in range(150)
        )
    )
    await page.get_by_label("Or upload new files").set_input_files(logbook)
    await page.get_by_role("button", name="Add to store").click()
    await expect(page.locator("#store-files")).to_contain_text("in_progress")
    await page.screenshot(path=str(out / f"vector-stores-{theme}.png"))
    print(f"wrote {out}/vector-stores-{theme}.png")
    await expect(page.locator("#store-progress")).to_contain_text("5 of 5 done", timeout=180_000)
    await context.close()


async def main(out: Path) -> None:
    executable = require_chromium()
    out.mkdir(parents=True, exist_ok=True)
    with scripted_upstream() as upstream:
        async with launched_chromium(executable) as browser:
            for theme in ("light", "dark"):
                # A server of its own per theme, so each set of screens shows the same data.
                with (
                    tempfile.TemporaryDirectory() as data_dir,
                    running_server(make_settings(data_dir, None, llm_base_url=upstream.url)) as base_url,
                ):
                    await screens(browser, base_url, upstream, out, theme, Path(data_dir))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    asyncio.run(main(parser.parse_args().out))
