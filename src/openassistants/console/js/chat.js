// Chat: a thread with an assistant, replies streamed from POST /v1/threads/{id}/runs (stream: true),
// beside the run's status, steps, tool calls, the form for outputs a run requires, and its usage.

import { api } from "./api.js";
import { applyMessageDelta, fillMessage, renderMessage } from "./messages.js";
import { FILE_SEARCH_CONTENT, applyStepDelta, fillStep, renderStep } from "./steps.js";
import { rememberThread } from "./store.js";
import { clear, field, guarded, h, notify, panel, pre, prettyJSON, statusBadge, usageText, when } from "./ui.js";

const ACTIVE = new Set(["queued", "in_progress", "cancelling"]);
const TERMINAL = new Set(["completed", "failed", "cancelled", "expired", "incomplete"]);
// How often a stream that ended before its run settled is resumed (…/events) before giving up.
const RESUME_ATTEMPTS = 5;

export async function showChat(root, params) {
  const assistants = await api.all("/assistants");
  const chat = new Chat(root, assistants, params.get("assistant"), params.get("thread"));
  await chat.start();
  return () => chat.leave();
}

class Chat {
  constructor(root, assistants, assistantId, threadId) {
    this.root = root;
    this.assistants = assistants;
    this.threadId = threadId;
    this.assistantId = assistantId || assistants[0]?.id || "";
    this.assistantChosen = Boolean(assistantId);
    this.messages = new Map(); // id -> message object being shown
    this.steps = new Map(); // id -> step object being shown
    this.run = null;
    this.busy = false;
    this.aborter = new AbortController();
  }

  leave() {
    this.aborter.abort();
  }

  async start() {
    this.assistantSelect = h(
      "select",
      { id: "chat-assistant" },
      this.assistants.map((a) => h("option", { value: a.id }, `${a.name || "(unnamed)"} · ${a.model}`)),
    );
    this.assistantSelect.value = this.assistantId;
    this.assistantSelect.addEventListener("change", () => {
      this.assistantId = this.assistantSelect.value;
      this.updateLocation();
    });
    const newThread = h("button", { type: "button", class: "secondary", id: "new-thread" }, "New thread");
    newThread.addEventListener("click", () => {
      location.hash = `#/chat?assistant=${encodeURIComponent(this.assistantId)}`;
    });
    this.threadLabel = h("p", { class: "muted thread-label" });
    this.log = h("div", { class: "messages", id: "messages", role: "log", "aria-live": "polite", "aria-label": "Messages" });
    this.input = h("textarea", {
      id: "composer-input",
      rows: "3",
      placeholder: "Write a message…",
      "aria-describedby": "composer-hint",
    });
    this.sendButton = h("button", { type: "submit", id: "send" }, "Send");
    // Files sent with the message, for the tools the user ticks (the message's `attachments`).
    this.attachInput = h("input", { type: "file", id: "composer-files", multiple: true });
    this.attachFileSearch = h("input", { type: "checkbox", id: "attach-file-search", checked: true });
    this.attachCode = h("input", { type: "checkbox", id: "attach-code-interpreter" });
    const composer = h(
      "form",
      { class: "composer", "aria-label": "Send a message" },
      h("label", { for: "composer-input", class: "visually-hidden" }, "Message"),
      this.input,
      this.sendButton,
      h(
        "div",
        { class: "composer-attachments" },
        h("label", { for: "composer-files" }, "Attach files"),
        this.attachInput,
        h("label", { class: "check" }, this.attachFileSearch, " for file search"),
        h("label", { class: "check" }, this.attachCode, " for code interpreter"),
      ),
      h("small", { id: "composer-hint", class: "hint" }, "Enter sends; Shift+Enter starts a new line."),
    );
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        composer.requestSubmit();
      }
    });
    composer.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });

    this.runHead = h("div", { class: "run-head", id: "run-status" }, h("p", { class: "muted" }, "No run yet."));
    this.actionArea = h("div", { id: "required-action" });
    this.stepList = h("ol", { class: "steps", id: "steps", "aria-label": "Run steps" });
    this.runList = h("ul", { class: "item-list runs", id: "runs", "aria-label": "Runs in this thread" });

    clear(
      this.root,
      h(
        "div",
        { class: "chat-layout" },
        panel(
          {
            title: "Chat",
            titleId: "chat-title",
            class: "chat-main",
            actions: h("div", { class: "inline" }, field("Assistant", this.assistantSelect), newThread),
          },
          this.threadLabel,
          this.log,
          composer,
        ),
        panel(
          { title: "Run", titleId: "run-title", tag: "aside", class: "run-panel" },
          this.runHead,
          this.actionArea,
          h("h3", {}, "Steps"),
          this.stepList,
          h("h3", {}, "Runs in this thread"),
          this.runList,
        ),
      ),
    );
    if (!this.assistants.length) {
      this.log.append(
        h("p", { class: "muted" }, "No assistant yet: ", h("a", { href: "#/assistants/new" }, "create one"), " first."),
      );
    }
    if (this.threadId) await this.loadThread();
    else this.threadLabel.textContent = "A new thread starts with your first message.";
    this.input.focus();
  }

  updateLocation() {
    const query = new URLSearchParams();
    if (this.assistantId) query.set("assistant", this.assistantId);
    if (this.threadId) query.set("thread", this.threadId);
    // replaceState fires no hashchange: the view stays as it is.
    history.replaceState(null, "", `#/chat?${query}`);
  }

  async loadThread() {
    const thread = await api.get(`/threads/${this.threadId}`);
    this.threadLabel.replaceChildren("Thread ", h("code", {}, thread.id), ` · created ${when(thread.created_at)}`);
    const messages = await api.all(`/threads/${this.threadId}/messages`, { order: "asc" });
    for (const message of messages) this.showMessage(message);
    const runs = await this.loadRuns();
    const latest = runs[0];
    if (!latest) return;
    if (!this.assistantChosen && this.assistants.some((a) => a.id === latest.assistant_id)) {
      this.assistantId = latest.assistant_id;
      this.assistantSelect.value = latest.assistant_id;
    }
    await this.showRun(latest);
    this.showRunError(latest);
    if (ACTIVE.has(latest.status)) {
      await this.whileBusy(() => this.follow(this.resume(latest.id, 0)));
    }
  }

  async loadRuns() {
    const page = await api.get(`/threads/${this.threadId}/runs`, { limit: 20 });
    clear(
      this.runList,
      page.data.map((run) => {
        const open = h("button", { type: "button", class: "link" }, run.id);
        open.addEventListener("click", () => guarded(open, () => this.showRun(run.id)));
        return h(
          "li",
          { dataset: { runId: run.id } },
          statusBadge(run.status),
          " ",
          open,
          h("small", { class: "muted block" }, `${when(run.created_at)} · ${usageText(run.usage) || "no usage yet"}`),
        );
      }),
    );
    return page.data;
  }

  // Shows a run (object or id) and its steps as stored, with file_search results' content.
  async showRun(run) {
    if (typeof run === "string") run = await api.get(`/threads/${this.threadId}/runs/${run}`);
    this.renderRun(run);
    const steps = await api.all(`/threads/${this.threadId}/runs/${run.id}/steps`, {
      order: "asc",
      "include[]": FILE_SEARCH_CONTENT,
    });
    this.steps.clear();
    clear(this.stepList);
    for (const step of steps) this.showStep(step);
  }

  renderRun(run) {
    this.run = run;
    const cancel =
      ACTIVE.has(run.status) || run.status === "requires_action"
        ? h("button", { type: "button", class: "secondary", id: "cancel-run" }, "Cancel run")
        : null;
    cancel?.addEventListener("click", () =>
      guarded(cancel, async () => this.renderRun(await api.post(`/threads/${this.threadId}/runs/${run.id}/cancel`))),
    );
    clear(
      this.runHead,
      h("div", {}, statusBadge(run.status), " ", h("code", {}, run.id)),
      h("dl", { class: "facts" }, [
        fact("Model", run.model),
        fact("Started", when(run.started_at || run.created_at)),
        run.usage ? fact("Usage", usageText(run.usage)) : null,
        run.last_error ? fact("Error", `${run.last_error.code}: ${run.last_error.message}`) : null,
        run.incomplete_details ? fact("Incomplete", run.incomplete_details.reason) : null,
      ]),
      cancel,
    );
    this.runHead.dataset.status = run.status;
    if (run.status === "requires_action") this.renderRequiredAction(run);
    else clear(this.actionArea);
  }

  renderRequiredAction(run) {
    const calls = run.required_action?.submit_tool_outputs?.tool_calls || [];
    // The same calls' form is already shown (the run is shown again once its stream settles): keep
    // it, and whatever has been typed into it meanwhile.
    const key = [run.id, ...calls.map((call) => call.id)].join(" ");
    if (this.actionArea.querySelector("form.required-action")?.dataset.calls === key) return;
    const outputs = calls.map((call) =>
      h("textarea", { rows: "3", class: "mono", name: call.id, dataset: { callId: call.id } }),
    );
    const submit = h("button", { type: "submit", id: "submit-outputs" }, "Submit outputs");
    const form = h(
      "form",
      { class: "required-action stack", "aria-labelledby": "required-action-title", dataset: { calls: key } },
      h("h3", { id: "required-action-title" }, "The run needs your tool outputs"),
      calls.map((call, i) =>
        h(
          "fieldset",
          {},
          h("legend", {}, h("code", {}, call.function.name), " ", h("small", { class: "muted" }, call.id)),
          h("div", { class: "label" }, "Arguments"),
          pre(prettyJSON(call.function.arguments)),
          field(`Output of ${call.function.name}`, outputs[i]),
        ),
      ),
      submit,
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const toolOutputs = calls.map((call, i) => ({ tool_call_id: call.id, output: outputs[i].value }));
      clear(this.actionArea);
      this.stream(api.stream(`/threads/${this.threadId}/runs/${run.id}/submit_tool_outputs`, { tool_outputs: toolOutputs }, this.aborter.signal));
    });
    clear(this.actionArea, form);
    outputs[0]?.focus();
  }

  showMessage(message) {
    const copy = structuredClone(message);
    let el = document.getElementById(`message-${message.id}`);
    if (el) fillMessage(el, copy);
    else {
      el = renderMessage(copy);
      this.log.append(el);
    }
    this.messages.set(message.id, copy);
    el.scrollIntoView({ block: "end" });
    return el;
  }

  showStep(step) {
    const copy = structuredClone(step);
    this.steps.set(step.id, copy);
    const el = document.getElementById(`step-${step.id}`);
    if (el) fillStep(el, copy);
    else this.stepList.append(renderStep(copy));
  }

  async send() {
    const text = this.input.value;
    if (!text.trim() || this.busy) return;
    if (!this.assistantId) {
      notify("Choose an assistant first.");
      this.assistantSelect.focus();
      return;
    }
    await this.whileBusy(async () => {
      if (!this.threadId) {
        const thread = await api.post("/threads", {});
        this.threadId = thread.id;
        rememberThread({ ...thread, title: text.slice(0, 80), assistant_id: this.assistantId });
        this.threadLabel.replaceChildren("Thread ", h("code", {}, thread.id));
        this.updateLocation();
      }
      const attachments = await this.uploadAttachments();
      const message = await api.post(`/threads/${this.threadId}/messages`, {
        role: "user",
        content: text,
        ...(attachments.length ? { attachments } : {}),
      });
      this.input.value = "";
      this.attachInput.value = "";
      this.showMessage(message);
      this.steps.clear();
      clear(this.stepList);
      await this.follow(
        api.stream(`/threads/${this.threadId}/runs`, { assistant_id: this.assistantId }, this.aborter.signal),
      );
    });
  }

  // Uploads the chosen files; each is attached for the tools ticked.
  async uploadAttachments() {
    const tools = [];
    if (this.attachFileSearch.checked) tools.push({ type: "file_search" });
    if (this.attachCode.checked) tools.push({ type: "code_interpreter" });
    const files = [...this.attachInput.files];
    if (files.length && !tools.length) throw new Error("Tick a tool for the attached files.");
    const attachments = [];
    for (const file of files) attachments.push({ file_id: (await api.upload(file)).id, tools });
    return attachments;
  }

  // A run that failed or expired says why in the conversation, where the reply would have been.
  showRunError(run) {
    if (!["failed", "expired"].includes(run.status)) return;
    const id = `run-error-${run.id}`;
    if (document.getElementById(id)) return;
    const why = run.last_error
      ? `${run.last_error.message} (${run.last_error.code})`
      : "The run expired before it finished.";
    this.log.append(
      h("div", { class: "run-error", id, role: "alert", dataset: { runId: run.id } }, h("strong", {}, `Run ${run.status}: `), why),
    );
    this.log.lastElementChild.scrollIntoView({ block: "end" });
  }

  stream(events) {
    this.whileBusy(() => this.follow(events));
  }

  async whileBusy(action) {
    this.busy = true;
    this.sendButton.disabled = true;
    this.root.querySelector(".chat-layout")?.setAttribute("aria-busy", "true");
    try {
      await action();
    } catch (error) {
      if (error.name !== "AbortError") notify(error.message);
    } finally {
      this.busy = false;
      this.sendButton.disabled = false;
      this.root.querySelector(".chat-layout")?.removeAttribute("aria-busy");
    }
  }

  resume(runId, after) {
    return api.follow(`/threads/${this.threadId}/runs/${runId}/events`, after, this.aborter.signal);
  }

  // Applies a run's server-sent events to the page until the run stops or needs action. A stream that
  // ends before that (a dropped connection) is resumed after the last event seen.
  async follow(events) {
    let settled = null;
    let runId = null;
    let lastId = 0;
    for (let attempt = 0; ; attempt += 1) {
      for await (const { event, data, id } of events) {
        if (id !== null) lastId = Number(id);
        if (event === "done") break;
        if (event.startsWith("thread.run.") && !event.startsWith("thread.run.step.")) runId = data.id;
        settled = this.onEvent(event, data) || settled;
        // Nothing the page needs follows; leaving now also covers a stream that is slow to end.
        if (settled) break;
      }
      if (settled || !runId || attempt === RESUME_ATTEMPTS || this.aborter.signal.aborted) break;
      await new Promise((resolve) => setTimeout(resolve, 250 * (attempt + 1)));
      events = this.resume(runId, lastId);
    }
    if (settled) {
      // Steps as stored: file_search results carry their content only when asked for.
      await this.showRun(settled.id);
      await this.loadRuns();
    }
  }

  // Shows one event; returns the run when it stopped or needs action.
  onEvent(event, data) {
    if (event === "error") {
      notify(data?.error?.message || "The stream reported an error.");
    } else if (event.startsWith("thread.run.step.")) {
      this.onStepEvent(event, data);
    } else if (event.startsWith("thread.run.")) {
      this.renderRun(data);
      if (TERMINAL.has(data.status)) this.showRunError(data);
      if (TERMINAL.has(data.status) || data.status === "requires_action") return data;
    } else if (event.startsWith("thread.message.")) {
      this.onMessageEvent(event, data);
    }
    return null;
  }

  onStepEvent(event, data) {
    if (event === "thread.run.step.delta") {
      const step = this.steps.get(data.id);
      if (!step) return;
      applyStepDelta(step, data.delta);
      fillStep(document.getElementById(`step-${data.id}`), step);
    } else {
      this.showStep(data);
    }
  }

  onMessageEvent(event, data) {
    if (event === "thread.message.delta") {
      const message = this.messages.get(data.id);
      if (!message) return;
      applyMessageDelta(message, data.delta);
      fillMessage(document.getElementById(`message-${data.id}`), message);
      this.log.lastElementChild?.scrollIntoView({ block: "end" });
    } else {
      this.showMessage(data);
    }
  }
}

function fact(term, value) {
  return [h("dt", {}, term), h("dd", {}, value)];
}
