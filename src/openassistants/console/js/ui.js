// Small DOM helpers shared by the views: element building, notices, forms, downloads, dates.

import { api } from "./api.js";

// h("button", {class: "x", onclick: fn}, "text", child…): an element; null/false children are skipped.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "value") el.value = value;
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uniqueId = 0;
export function newId(prefix) {
  uniqueId += 1;
  return `${prefix}-${uniqueId}`;
}

// A labelled control: <div class="field"><label for=…>text</label>control hint</div>.
export function field(label, control, hint) {
  control.id = control.id || newId("f");
  const hintEl = hint ? h("small", { class: "hint", id: `${control.id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control, hintEl);
}

// A panel: a <section> (or another landmark) named by its own heading, with any actions beside it.
export function panel({ title, titleId, actions, tag = "section", class: cls }, ...children) {
  const heading = h("h2", { id: titleId }, title);
  return h(
    tag,
    { class: cls ? `panel ${cls}` : "panel", "aria-labelledby": titleId },
    actions ? h("div", { class: "panel-head" }, heading, actions) : heading,
    ...children,
  );
}

// The page's one place for errors and confirmations; screen readers hear it (role=alert / status).
export function notify(message, kind = "error") {
  const area = document.getElementById("notice");
  const close = h("button", { type: "button", class: "link", "aria-label": "Dismiss" }, "×");
  const note = h(
    "div",
    { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", {}, message),
    close,
  );
  close.addEventListener("click", () => note.remove());
  area.replaceChildren(note);
  if (kind !== "error") setTimeout(() => note.remove(), 4000);
}

export function clearNotice() {
  document.getElementById("notice").replaceChildren();
}

// Runs an async action from a button: disables it meanwhile, reports an error instead of throwing.
export async function guarded(button, action) {
  if (button) button.disabled = true;
  try {
    return await action();
  } catch (error) {
    if (error.name !== "AbortError") notify(error.message);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

export function when(seconds) {
  if (!seconds) return "";
  return new Date(seconds * 1000).toLocaleString();
}

export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, status);
}

export function usageText(usage) {
  if (!usage) return "";
  return `${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion = ${usage.total_tokens} tokens`;
}

const fileNames = new Map();
export async function fileName(fileId) {
  if (!fileNames.has(fileId)) {
    fileNames.set(
      fileId,
      api.get(`/files/${encodeURIComponent(fileId)}`).then(
        (file) => file.filename,
        () => fileId,
      ),
    );
  }
  return fileNames.get(fileId);
}

// Fetches a file with the key and hands it to the browser as a download under its own name.
export async function downloadFile(fileId, name) {
  const blob = await api.fileBlob(fileId);
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: name || (await fileName(fileId)) });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export function downloadButton(fileId, label) {
  const button = h("button", { type: "button", class: "link download", dataset: { fileId } }, label);
  button.addEventListener("click", () => guarded(button, () => downloadFile(fileId)));
  return button;
}

// An <img> for a file fetched with the key.
export function fileImage(fileId, alt) {
  const img = h("img", { alt, class: "file-image" });
  api.fileBlob(fileId).then(
    (blob) => (img.src = URL.createObjectURL(blob)),
    (error) => img.replaceWith(h("span", { class: "muted" }, `(image ${fileId}: ${error.message})`)),
  );
  return img;
}

export function pre(text, cls = "code") {
  return h("pre", { class: cls, tabindex: "0" }, text);
}

export function prettyJSON(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

// Key/value rows for metadata (up to 16, as the API allows).
export function metadataEditor(initial = {}) {
  const rows = h("div", { class: "kv-rows" });
  const addRow = (key = "", value = "") => {
    const keyInput = h("input", { type: "text", value: key, maxlength: "64", "aria-label": "Metadata key" });
    const valueInput = h("input", {
      type: "text",
      value,
      maxlength: "512",
      "aria-label": "Metadata value",
    });
    const remove = h("button", { type: "button", class: "link", "aria-label": "Remove metadata entry" }, "Remove");
    const row = h("div", { class: "kv-row" }, keyInput, valueInput, remove);
    remove.addEventListener("click", () => row.remove());
    rows.append(row);
    return keyInput;
  };
  for (const [key, value] of Object.entries(initial || {})) addRow(key, value);
  const add = h("button", { type: "button", class: "secondary" }, "Add metadata");
  add.addEventListener("click", () => {
    if (rows.children.length < 16) addRow().focus();
  });
  const element = h("fieldset", { class: "metadata" }, h("legend", {}, "Metadata"), rows, add);
  return {
    element,
    value() {
      const result = {};
      for (const row of rows.children) {
        const [key, value] = row.querySelectorAll("input");
        if (key.value.trim()) result[key.value.trim()] = value.value;
      }
      return result;
    },
  };
}
