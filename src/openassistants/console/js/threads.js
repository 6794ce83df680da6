// Threads: the key's threads (GET /v1/threads, an OpenAssistants extension) page by page, and the ones
// created from this browser.

import { api } from "./api.js";
import { forgetThread, localThreads } from "./store.js";
import { clear, guarded, h, notify, panel, when } from "./ui.js";

// How much of a thread's first message its list entry shows.
const PREVIEW_CHARS = 120;

export async function showThreads(root) {
  const serverList = h("ul", { class: "item-list", id: "thread-list", "aria-label": "Threads on the server" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load more");
  const localList = h("ul", { class: "item-list", id: "local-threads", "aria-label": "Threads started here" });
  clear(
    root,
    h(
      "div",
      { class: "split" },
      panel(
        { title: "Threads", titleId: "threads-title", actions: h("a", { class: "button", href: "#/chat" }, "New chat") },
        serverList,
        more,
      ),
      panel({ title: "Started in this browser", titleId: "local-threads-title" }, localList),
    ),
  );

  let after;
  const loadPage = async () => {
    const page = await api.get("/threads", { limit: 20, after });
    const titles = new Map(localThreads().map((t) => [t.id, t]));
    for (const thread of page.data) {
      const mine = titles.get(thread.id);
      serverList.append(threadItem({ ...thread, assistant_id: mine?.assistant_id }, mine?.title || thread.metadata?.title));
    }
    if (!serverList.children.length) serverList.append(h("li", { class: "muted" }, "No threads yet."));
    after = page.last_id;
    more.hidden = !page.has_more;
  };
  more.addEventListener("click", () => guarded(more, loadPage));
  await loadPage();

  const mine = localThreads();
  if (!mine.length) localList.append(h("li", { class: "muted" }, "None yet."));
  for (const thread of mine) localList.append(threadItem(thread, thread.title, true));
}

function threadItem(thread, title, local = false) {
  const query = new URLSearchParams({ thread: thread.id });
  if (thread.assistant_id) query.set("assistant", thread.assistant_id);
  const remove = h("button", { type: "button", class: "link danger-text", "aria-label": `Delete thread ${thread.id}` }, "Delete");
  const preview = h("span", { class: "block thread-preview" });
  const item = h(
    "li",
    { dataset: { threadId: thread.id } },
    h(
      "a",
      { href: `#/chat?${query}` },
      h("strong", { class: "thread-title" }, title || thread.id),
      preview,
      h("small", { class: "muted block" }, title ? `${thread.id} · ${when(thread.created_at)}` : when(thread.created_at)),
    ),
    remove,
  );
  showPreview(thread.id, preview, title);
  remove.addEventListener("click", async () => {
    if (!confirm(`Delete thread ${thread.id} and its messages?`)) return;
    const done = await guarded(remove, async () => {
      try {
        return await api.delete(`/threads/${thread.id}`);
      } catch (error) {
        if (local && error.status === 404) return { deleted: true };
        throw error;
      }
    });
    if (done) {
      forgetThread(thread.id);
      item.remove();
      notify("Thread deleted.", "success");
    }
  });
  return item;
}

// The thread's first message, so a list of threads reads as conversations rather than ids.
async function showPreview(threadId, el, title) {
  let page;
  try {
    page = await api.get(`/threads/${threadId}/messages`, { limit: 1, order: "asc" });
  } catch {
    return;
  }
  const first = page.data[0];
  const text = first?.content.find((part) => part.type === "text")?.text.value.trim();
  if (!text || text.slice(0, PREVIEW_CHARS) === title) return;
  el.textContent = text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS)}…` : text;
}
