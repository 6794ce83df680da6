// Model-written Markdown shown as HTML: rendered and sanitized by the server (POST /v1/console/markdown),
// requested in batches so a thread's messages cost one request, then given copy buttons and the
// elements that stand for annotation spans (citations, file links).

import { api } from "./api.js";
import { h } from "./ui.js";

// What the server renders in one request, and the longest text it takes (schemas/console.py).
const MAX_TEXTS = 100;
export const MAX_CHARS = 256000;
// Annotation spans travel through the renderer as private-use characters around their number.
const MARK_OPEN = "\uE000";
const MARK_CLOSE = "\uE001";
const MARK = /\uE000(\d+)\uE001/g;
const LINKED_MARK = /\[[^\]\n]*\]\((\uE000\d+\uE001)\)/g;

let queue = [];

// The sanitized HTML for a text, from a batch of the texts asked for in the same tick.
function renderHTML(text) {
  return new Promise((resolve, reject) => {
    queue.push({ text, resolve, reject });
    if (queue.length === 1) setTimeout(flush, 0);
  });
}

async function flush() {
  const batch = queue.splice(0, MAX_TEXTS);
  if (queue.length) setTimeout(flush, 0);
  try {
    const { data } = await api.post("/console/markdown", { texts: batch.map((item) => item.text) });
    batch.forEach((item, i) => item.resolve(data[i]));
  } catch (error) {
    batch.forEach((item) => item.reject(error));
  }
}

// A placeholder for the i-th element in `marks`; characters that could be mistaken for one are dropped
// from the model's own text.
export function markPlaceholder(i) {
  return `${MARK_OPEN}${i}${MARK_CLOSE}`;
}

export function withoutMarks(text) {
  return text.replaceAll(MARK_OPEN, "").replaceAll(MARK_CLOSE, "");
}

// Replaces `el`'s plain rendering with the Markdown one, once the server has rendered `source`. On
// failure (an old server, a refused key) the plain text stays.
export async function showMarkdown(el, source, marks) {
  if (source.length > MAX_CHARS) return;
  // A Markdown link around an annotated span ("[table](sandbox:/mnt/data/t.csv)") is the span's own
  // element (a download button): as a link target the placeholder would become a URL.
  source = source.replace(LINKED_MARK, "$1");
  let html;
  try {
    html = await renderHTML(source);
  } catch {
    return;
  }
  const template = document.createElement("template");
  template.innerHTML = html;
  placeMarks(template.content, marks);
  for (const block of template.content.querySelectorAll("pre")) addCopyButton(block);
  el.classList.add("markdown");
  el.replaceChildren(template.content);
}

function placeMarks(fragment, marks) {
  const walker = document.createTreeWalker(fragment, NodeFilter.SHOW_TEXT);
  const nodes = [];
  while (walker.nextNode()) if (walker.currentNode.nodeValue.includes(MARK_OPEN)) nodes.push(walker.currentNode);
  for (const node of nodes) {
    const value = node.nodeValue;
    const parts = [];
    let at = 0;
    for (const match of value.matchAll(MARK)) {
      parts.push(value.slice(at, match.index), marks[Number(match[1])] || "");
      at = match.index + match[0].length;
    }
    parts.push(value.slice(at));
    node.replaceWith(...parts.filter((part) => part !== ""));
  }
}

function addCopyButton(block) {
  const button = h("button", { type: "button", class: "secondary copy-code", "aria-label": "Copy code" }, "Copy");
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(block.textContent);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => (button.textContent = "Copy"), 2000);
  });
  const wrap = h("div", { class: "code-block" });
  block.replaceWith(wrap);
  wrap.append(button, block);
}
