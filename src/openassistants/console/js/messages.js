// Rendering a thread's messages: text with citations as footnotes, images, attachments; streamed deltas.

import { markPlaceholder, showMarkdown, withoutMarks } from "./markdown.js";
import { clear, downloadButton, fileImage, fileName, h } from "./ui.js";

// One message element, rendered whole (on load, and again when a streamed message completes).
export function renderMessage(message) {
  const el = h("article", {
    class: `message role-${message.role}`,
    id: `message-${message.id}`,
    dataset: { messageId: message.id, status: message.status || "" },
    "aria-label": `${message.role} message`,
  });
  fillMessage(el, message);
  return el;
}

export function fillMessage(el, message) {
  const footnotes = [];
  const body = h("div", { class: "message-body" });
  // A message still streaming is shown as plain text; Markdown waits for its last token.
  const markdown = message.status !== "in_progress";
  for (const part of message.content || []) body.append(renderPart(message.id, part, footnotes, markdown));
  el.dataset.status = message.status || "";
  clear(
    el,
    h("header", { class: "message-head" }, h("span", { class: "who" }, message.role), statusNote(message)),
    body,
    footnotes.length ? renderFootnotes(message.id, footnotes) : null,
    attachmentsOf(message),
  );
}

function statusNote(message) {
  if (message.status === "incomplete") {
    const reason = message.incomplete_details?.reason;
    return h("span", { class: "badge status-incomplete" }, reason ? `incomplete: ${reason}` : "incomplete");
  }
  return null;
}

function renderPart(messageId, part, footnotes, markdown) {
  if (part.type === "text") return renderText(messageId, part.text, footnotes, markdown);
  if (part.type === "image_file") return fileImage(part.image_file.file_id, "Image from the assistant");
  if (part.type === "image_url") return h("img", { class: "file-image", src: part.image_url.url, alt: "" });
  if (part.type === "refusal") return h("p", { class: "refusal" }, part.refusal);
  return h("p", { class: "muted" }, `(${part.type})`);
}

// The text with each annotation's span replaced: citations by a footnote reference, file paths by a
// download button. Shown as plain text at once, then as Markdown when `markdown` and the server has
// rendered it (the spans travel through the renderer as placeholders).
function renderText(messageId, text, footnotes, markdown) {
  const annotations = [...(text.annotations || [])]
    .filter((a) => Number.isInteger(a.start_index) && Number.isInteger(a.end_index))
    .sort((a, b) => a.start_index - b.start_index);
  const pieces = [];
  const marks = [];
  let source = "";
  const addText = (value) => {
    pieces.push(value);
    source += withoutMarks(value);
  };
  let at = 0;
  for (const annotation of annotations) {
    if (annotation.start_index < at) continue;
    addText(text.value.slice(at, annotation.start_index));
    const mark = annotationElement(messageId, annotation, footnotes);
    if (mark) {
      pieces.push(mark);
      source += markPlaceholder(marks.length);
      marks.push(mark);
    } else {
      addText(annotation.text);
    }
    at = annotation.end_index;
  }
  addText(text.value.slice(at));
  const el = h("div", { class: "text" }, pieces);
  if (markdown) showMarkdown(el, source, marks);
  return el;
}

function annotationElement(messageId, annotation, footnotes) {
  if (annotation.type === "file_citation") {
    const fileId = annotation.file_citation.file_id;
    let n = footnotes.findIndex((note) => note.fileId === fileId) + 1;
    if (!n) {
      footnotes.push({ fileId, quote: annotation.file_citation.quote });
      n = footnotes.length;
    }
    return h(
      "sup",
      { class: "citation" },
      h(
        "a",
        {
          href: `#fn-${messageId}-${n}`,
          id: `ref-${messageId}-${n}-${annotation.start_index}`,
          title: annotation.text,
          "aria-label": `Source ${n}`,
          onclick: (event) => jumpTo(event, `fn-${messageId}-${n}`),
        },
        `[${n}]`,
      ),
    );
  }
  if (annotation.type === "file_path") {
    const label = annotation.text.split("/").pop() || annotation.file_path.file_id;
    return downloadButton(annotation.file_path.file_id, label);
  }
  return null;
}

// Footnote links stay inside the page's hash router: focus the target instead of changing the hash.
function jumpTo(event, id) {
  event.preventDefault();
  const target = document.getElementById(id);
  if (target) {
    target.focus();
    target.scrollIntoView({ block: "nearest" });
  }
}

function renderFootnotes(messageId, footnotes) {
  const list = h("ol", { class: "footnotes" });
  footnotes.forEach((note, i) => {
    const name = h("span", { class: "file-name" }, note.fileId);
    fileName(note.fileId).then((text) => (name.textContent = text));
    list.append(
      h(
        "li",
        { id: `fn-${messageId}-${i + 1}`, tabindex: "-1" },
        name,
        " ",
        downloadButton(note.fileId, "Download"),
        note.quote ? h("blockquote", {}, note.quote) : null,
      ),
    );
  });
  return h("aside", { class: "sources", "aria-label": "Sources" }, h("h4", {}, "Sources"), list);
}

function attachmentsOf(message) {
  if (!message.attachments?.length) return null;
  return h(
    "ul",
    { class: "attachments", "aria-label": "Attachments" },
    message.attachments.map((attachment) => {
      const name = h("span", {}, attachment.file_id);
      fileName(attachment.file_id).then((text) => (name.textContent = text));
      return h("li", {}, "📎 ", name, " ", downloadButton(attachment.file_id, "Download"));
    }),
  );
}

// Adds a thread.message.delta's text to a message being streamed (annotations wait for completion).
export function applyMessageDelta(message, delta) {
  for (const part of delta.content || []) {
    const existing = message.content[part.index];
    if (!existing) {
      message.content[part.index] = structuredClone({ ...part, index: undefined });
      if (part.type === "text") message.content[part.index].text = { value: part.text?.value || "", annotations: [] };
    } else if (part.type === "text" && part.text?.value) {
      existing.text.value += part.text.value;
    }
  }
}
