// Files: upload, list, download (fetched with the key), delete.

import { api } from "./api.js";
import { bytes, clear, downloadButton, field, guarded, h, notify, panel, when } from "./ui.js";

export async function showFiles(root) {
  const input = h("input", { type: "file", id: "file-input", multiple: true });
  const purpose = h(
    "select",
    { id: "file-purpose" },
    ["assistants", "vision", "user_data"].map((p) => h("option", { value: p }, p)),
  );
  const upload = h("button", { type: "submit", id: "upload" }, "Upload");
  const form = h(
    "form",
    { class: "inline", "aria-label": "Upload files" },
    field("Files to upload", input),
    field("Purpose", purpose),
    upload,
  );
  const table = h("tbody");
  clear(
    root,
    panel(
      { title: "Files", titleId: "files-title" },
      form,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "files" },
          h("caption", { class: "visually-hidden" }, "Uploaded files"),
          h(
            "thead",
            {},
            h("tr", {}, ["Name", "Id", "Purpose", "Size", "Created", ""].map((c) => h("th", { scope: "col" }, c))),
          ),
          table,
        ),
      ),
    ),
  );

  const load = async () => {
    const files = await api.all("/files");
    clear(table, files.length ? files.map((file) => fileRow(file, load)) : h("tr", {}, h("td", { colspan: "6", class: "muted" }, "No files yet.")));
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!input.files.length) {
      notify("Choose one or more files first.");
      input.focus();
      return;
    }
    const done = await guarded(upload, async () => {
      for (const file of input.files) await api.upload(file, purpose.value);
      return true;
    });
    if (done) {
      notify(`Uploaded ${input.files.length} file(s).`, "success");
      input.value = "";
      await load();
    }
  });
  await load();
}

function fileRow(file, reload) {
  const remove = h("button", { type: "button", class: "link danger-text", "aria-label": `Delete ${file.filename}` }, "Delete");
  remove.addEventListener("click", async () => {
    if (!confirm(`Delete ${file.filename}?`)) return;
    if (await guarded(remove, () => api.delete(`/files/${file.id}`))) await reload();
  });
  return h(
    "tr",
    { dataset: { fileId: file.id } },
    h("td", {}, file.filename),
    h("td", {}, h("code", {}, file.id)),
    h("td", {}, file.purpose),
    h("td", { class: "number" }, bytes(file.bytes)),
    h("td", {}, when(file.created_at)),
    h("td", { class: "row-actions" }, downloadButton(file.id, "Download"), " ", remove),
  );
}
