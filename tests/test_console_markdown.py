"""``POST /v1/console/markdown``: the console's Markdown, rendered and sanitized on the server.

Model output is hostile input here: whatever the model writes, the HTML that comes back carries no
script, no event handler and no link the browser would run.
"""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest

from openassistants.markdown import ALLOWED_TAGS
from openassistants.schemas.console import MARKDOWN_MAX_CHARS, MARKDOWN_MAX_TEXTS
from tests.conftest import Server

HOSTILE = [
    "<script>alert('x')</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    '<a href="javascript:alert(1)">x</a>',
    "<svg onload=alert(1)>",
    '<iframe src="http://evil.example"></iframe>',
    "![x](javascript:alert(1))",
    '[x](http://ok.example "title" onmouseover=alert(1))',
    "<details open ontoggle=alert(1)>",
    "```html\n<script>alert(1)</script>\n```",
]


async def render(raw: httpx.AsyncClient, *texts: str) -> list[str]:
    response = await raw.post("/console/markdown", json={"texts": list(texts)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    html: list[str] = body["data"]
    return html


async def test_markdown_is_rendered(raw: httpx.AsyncClient) -> None:
    text = "## Plan\n\n**bold**, *it*, ~~gone~~ and `code`\n\n- one\n- two\n\n```python\nprint(1)\n```"
    [html] = await render(raw, text)
    for fragment in ("<h2>Plan</h2>", "<strong>bold</strong>", "<em>it</em>", "<s>gone</s>",
                     "<code>code</code>", "<li>one</li>", "<pre><code>print(1)\n</code></pre>"):  # fmt: skip
        assert fragment in html
    [table] = await render(raw, "| a | b |\n|---|---|\n| 1 | 2 |")
    assert "<table>" in table and "<td>2</td>" in table


async def test_links_open_elsewhere_and_say_nothing_of_the_console(raw: httpx.AsyncClient) -> None:
    [html] = await render(raw, "[docs](https://example.com/a?b=1)")
    assert 'href="https://example.com/a?b=1"' in html
    assert 'target="_blank"' in html and 'rel="noopener noreferrer nofollow"' in html


class _Elements(HTMLParser):
    """Every element and attribute of an HTML fragment, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))


@pytest.mark.parametrize("text", HOSTILE)
async def test_hostile_model_output_is_inert(raw: httpx.AsyncClient, text: str) -> None:
    [html] = await render(raw, text)
    parser = _Elements()
    parser.feed(html)
    for tag, attributes in parser.elements:
        assert tag in ALLOWED_TAGS, html
        assert not [name for name in attributes if name.startswith("on") or name in {"style", "src"}], html
        href = attributes.get("href")
        if href is not None:
            assert urlsplit(href).scheme in {"http", "https", "mailto"}, html


async def test_citation_placeholders_survive_rendering(raw: httpx.AsyncClient) -> None:
    # The console marks annotation spans with private-use characters before rendering.
    [html] = await render(raw, "As the manual says\ue0001\ue001, **yes**\ue0002\ue001.")
    assert "\ue0001\ue001" in html and "\ue0002\ue001" in html


async def test_many_texts_in_one_request_keep_their_order(raw: httpx.AsyncClient) -> None:
    html = await render(raw, *[f"**{n}**" for n in range(MARKDOWN_MAX_TEXTS)])
    assert html == [f"<p><strong>{n}</strong></p>\n" for n in range(MARKDOWN_MAX_TEXTS)]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"texts": ["x"] * (MARKDOWN_MAX_TEXTS + 1)}, "texts"),
        ({"texts": ["x" * (MARKDOWN_MAX_CHARS + 1)]}, "texts[0]"),
        ({"texts": [1]}, None),
        ({}, "texts"),
        ({"texts": ["x"], "extra": 1}, None),
    ],
)
async def test_bad_requests_are_openai_shaped_400s(
    raw: httpx.AsyncClient, body: dict[str, object], param: str | None
) -> None:
    response = await raw.post("/console/markdown", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param


async def test_rendering_needs_a_key(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as anonymous:
        response = await anonymous.post("/console/markdown", json={"texts": ["x"]})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
