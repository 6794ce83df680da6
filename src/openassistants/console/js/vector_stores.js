// Vector stores: create, delete, add files (a batch), and watch ingestion: file_counts and each file's
// status, polled while anything is in progress.

import { api } from "./api.js";
import { bytes, clear, field, fileName, guarded, h, notify, statusBadge, when } from "./ui.js";

const POLL_MS = 1000;

export async function showVectorStores(root, { id } = {}) {
  const list = h("ul", { class: "item-list", id: "vector-store-list", "aria-label": "Vector stores" });
  const name = h("input", { type: "text", id: "new-store-name", placeholder: "e.g. Handbook" });
  const create = h("button", { type: "submit" }, "Create");
  const createForm = h("form", { class: "inline", "aria-label": "Create a vector store" }, field("New store name", name), create);
  const detail = h("section", { class: "panel", id: "vector-store", "aria-labelledby": "store-title" });
  clear(
    root,
    h(
      "div",
      { class: "split" },
      h("section", { class: "panel" }, h("h2", {}, "Vector stores"), createForm, list),
      detail,
    ),
  );
  createForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const store = await guarded(create, () => api.post("/vector_stores", { name: name.value || undefined }));
    if (store) location.hash = `#/vector-stores/${store.id}`;
  });

  const stores = await api.all("/vector_stores");
  if (!stores.length) list.append(h("li", { class: "muted" }, "No vector stores yet."));
  for (const store of stores) {
    const item = h("li", { dataset: { storeId: store.id } });
    fillListItem(item, store, id);
    list.append(item);
  }
  const current = stores.find((s) => s.id === id) || stores[0];
  if (!current) {
    clear(detail, h("h2", { id: "store-title" }, "No store selected"), h("p", { class: "muted" }, "Create one to start."));
    return undefined;
  }
  const view = new StoreView(detail, current.id);
  await view.start();
  return () => view.leave();
}

// A store's line in the list; the open store's is filled again at each poll, so its counts, size and
// status stay true during and after ingestion.
function fillListItem(item, store, selectedId) {
  const counts = store.file_counts;
  const summary = counts.in_progress
    ? `${counts.total} files (${counts.in_progress} in progress) · ${bytes(store.usage_bytes)}`
    : `${counts.total} files · ${bytes(store.usage_bytes)}`;
  clear(
    item,
    h(
      "a",
      { href: `#/vector-stores/${store.id}`, "aria-current": store.id === selectedId ? "page" : null },
      h("strong", {}, store.name || "(unnamed)"),
      " ",
      statusBadge(store.status),
      h("small", { class: "muted block store-summary" }, summary),
    ),
  );
}

class StoreView {
  constructor(root, storeId) {
    this.root = root;
    this.storeId = storeId;
    this.timer = null;
    this.left = false;
  }

  leave() {
    this.left = true;
    clearTimeout(this.timer);
  }

  async start() {
    this.head = h("div", { id: "store-head" });
    this.progress = h("div", { id: "store-progress" });
    this.table = h("tbody");
    const files = await api.all("/files").catch(() => []);
    const choose = h(
      "select",
      { id: "add-files", multiple: true, size: String(Math.min(Math.max(files.length, 2), 6)) },
      files.map((file) => h("option", { value: file.id }, `${file.filename} (${file.id})`)),
    );
    const upload = h("input", { type: "file", id: "store-upload", multiple: true });
    const add = h("button", { type: "submit", id: "add-to-store" }, "Add to store");
    const form = h(
      "form",
      { class: "stack", "aria-label": "Add files to this store" },
      field("Uploaded files", choose, "Ctrl/Cmd+click or Shift+arrows to choose several."),
      field("Or upload new files", upload),
      add,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const done = await guarded(add, async () => {
        const ids = [...choose.selectedOptions].map((option) => option.value);
        for (const file of upload.files) ids.push((await api.upload(file)).id);
        if (!ids.length) throw new Error("Choose or upload at least one file.");
        return api.post(`/vector_stores/${this.storeId}/file_batches`, { file_ids: ids });
      });
      if (done) {
        upload.value = "";
        choose.selectedIndex = -1;
        notify(`Adding ${done.file_counts.total} file(s).`, "success");
        await this.refresh();
      }
    });
    const remove = h("button", { type: "button", class: "danger" }, "Delete store");
    remove.addEventListener("click", async () => {
      if (!confirm("Delete this vector store? Its files stay uploaded.")) return;
      if (await guarded(remove, () => api.delete(`/vector_stores/${this.storeId}`))) location.hash = "#/vector-stores";
    });
    clear(
      this.root,
      this.head,
      this.progress,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "store-files" },
          h("caption", { class: "visually-hidden" }, "Files in this store"),
          h("thead", {}, h("tr", {}, ["File", "Status", "Size", "Error", ""].map((c) => h("th", { scope: "col" }, c)))),
          this.table,
        ),
      ),
      h("h3", {}, "Add files"),
      form,
      h("div", { class: "actions" }, remove),
    );
    await this.refresh();
  }

  async refresh() {
    clearTimeout(this.timer);
    if (this.left) return;
    const store = await api.get(`/vector_stores/${this.storeId}`);
    const files = await api.all(`/vector_stores/${this.storeId}/files`);
    this.render(store, files);
    if (!this.left && (store.file_counts.in_progress > 0 || store.status === "in_progress")) {
      this.timer = setTimeout(() => this.refresh().catch((error) => notify(error.message)), POLL_MS);
    }
  }

  render(store, files) {
    const item = document.querySelector(`#vector-store-list li[data-store-id="${store.id}"]`);
    if (item) fillListItem(item, store, store.id);
    const counts = store.file_counts;
    const done = counts.completed + counts.failed + counts.cancelled;
    clear(
      this.head,
      h("h2", { id: "store-title" }, store.name || "(unnamed store)"),
      h(
        "p",
        { class: "muted" },
        h("code", {}, store.id),
        " · ",
        statusBadge(store.status),
        ` · ${bytes(store.usage_bytes)} · created ${when(store.created_at)}`,
      ),
    );
    clear(
      this.progress,
      h(
        "label",
        { for: "ingestion-progress" },
        `Ingestion: ${done} of ${counts.total} done (${counts.completed} completed, ${counts.in_progress} in progress, ${counts.failed} failed, ${counts.cancelled} cancelled)`,
      ),
      h("progress", { id: "ingestion-progress", max: String(Math.max(counts.total, 1)), value: String(counts.total ? done : 0) }),
    );
    this.progress.dataset.inProgress = String(counts.in_progress);
    clear(
      this.table,
      files.length
        ? files.map((file) => {
            const name = h("span", {}, file.id);
            fileName(file.id).then((text) => (name.textContent = text));
            const remove = h("button", { type: "button", class: "link danger-text" }, "Remove");
            remove.addEventListener("click", async () => {
              if (await guarded(remove, () => api.delete(`/vector_stores/${this.storeId}/files/${file.id}`))) await this.refresh();
            });
            return h(
              "tr",
              { dataset: { fileId: file.id, status: file.status } },
              h("td", {}, name),
              h("td", {}, statusBadge(file.status)),
              h("td", { class: "number" }, bytes(file.usage_bytes)),
              h("td", {}, file.last_error ? `${file.last_error.code}: ${file.last_error.message}` : ""),
              h("td", {}, remove),
            );
          })
        : h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No files in this store yet.")),
    );
  }
}
