"""Model-written Markdown turned into HTML the console can insert: rendered, then sanitized.

markdown-it-py renders CommonMark (plus tables and strikethrough) with raw HTML disabled, so a model's
``<script>`` stays text; nh3 (ammonia) then keeps only the tags and attributes below, and only http(s)
and mailto links, as a second wall should the renderer ever let something through. The console's
Content-Security-Policy forbids inline script on top of both.
"""

from __future__ import annotations

import functools

import nh3
from markdown_it import MarkdownIt

ALLOWED_TAGS = frozenset(
    {
        "p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "blockquote",
        "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "a",
        "table", "thead", "tbody", "tr", "th", "td",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
#: Links open outside the console and tell the target nothing about it.
LINK_ATTRIBUTES = {"a": {"target": "_blank"}}
LINK_REL = "noopener noreferrer nofollow"


@functools.cache
def _renderer() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])


def render_markdown(text: str) -> str:
    """Sanitized HTML for ``text``, safe to insert into the console's page."""
    html = _renderer().render(text)
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL,
        set_tag_attribute_values=LINK_ATTRIBUTES,
        strip_comments=True,
    )
