// Run steps: message creation and tool calls (function arguments and outputs, code interpreter input,
// logs and images, file_search results), rendered whole or grown from streamed deltas.

import { clear, fileImage, fileName, h, pre, prettyJSON, statusBadge, usageText } from "./ui.js";

export const FILE_SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content";

export function renderStep(step) {
  const el = h("li", { class: "step", id: `step-${step.id}`, dataset: { stepId: step.id } });
  fillStep(el, step);
  return el;
}

export function fillStep(el, step) {
  const details = step.step_details || {};
  let body;
  if (details.type === "message_creation") {
    body = h("p", { class: "muted" }, "Wrote message ", h("code", {}, details.message_creation.message_id));
  } else {
    body = h("ol", { class: "tool-calls" }, (details.tool_calls || []).map(renderToolCall));
  }
  el.dataset.status = step.status;
  clear(
    el,
    h(
      "div",
      { class: "step-head" },
      h("strong", {}, details.type === "tool_calls" ? "Tool calls" : "Message"),
      " ",
      statusBadge(step.status),
      step.usage ? h("small", { class: "muted" }, ` ${usageText(step.usage)}`) : null,
    ),
    body,
    step.last_error ? h("p", { class: "error-text" }, step.last_error.message) : null,
  );
}

function renderToolCall(call) {
  if (call.type === "function") {
    const fn = call.function || {};
    return h(
      "li",
      { class: "tool-call function", dataset: { callId: call.id || "" } },
      h("div", {}, h("span", { class: "tag" }, "function"), " ", h("code", {}, fn.name || "…")),
      h("div", { class: "label" }, "Arguments"),
      pre(prettyJSON(fn.arguments || "")),
      fn.output !== null && fn.output !== undefined
        ? [h("div", { class: "label" }, "Output"), pre(fn.output, "code output")]
        : null,
    );
  }
  if (call.type === "code_interpreter") {
    const ci = call.code_interpreter || {};
    return h(
      "li",
      { class: "tool-call code-interpreter" },
      h("div", {}, h("span", { class: "tag" }, "code interpreter")),
      h("div", { class: "label" }, "Input"),
      pre(ci.input || ""),
      (ci.outputs || []).map((output) =>
        output.type === "logs"
          ? [h("div", { class: "label" }, "Logs"), pre(output.logs, "code output")]
          : fileImage(output.image.file_id, "Code interpreter output image"),
      ),
    );
  }
  if (call.type === "file_search") {
    const results = call.file_search?.results || [];
    return h(
      "li",
      { class: "tool-call file-search" },
      h("div", {}, h("span", { class: "tag" }, "file search"), ` ${results.length} results`),
      h(
        "ol",
        { class: "search-results" },
        results.map((result) => {
          const name = h("strong", {}, result.file_name || result.file_id);
          if (!result.file_name) fileName(result.file_id).then((text) => (name.textContent = text));
          const text = (result.content || []).map((c) => c.text).join("\n");
          return h(
            "li",
            {},
            name,
            h("small", { class: "muted" }, ` score ${Number(result.score).toFixed(3)}`),
            text ? h("blockquote", {}, text.length > 400 ? `${text.slice(0, 400)}…` : text) : null,
          );
        }),
      ),
    );
  }
  return h("li", { class: "tool-call" }, call.type);
}

// Merges a thread.run.step.delta into the step object it belongs to.
export function applyStepDelta(step, delta) {
  const d = delta.step_details;
  if (!d || d.type !== "tool_calls") return;
  step.step_details ||= { type: "tool_calls", tool_calls: [] };
  const calls = (step.step_details.tool_calls ||= []);
  for (const piece of d.tool_calls || []) {
    const call = (calls[piece.index] ||= { type: piece.type });
    if (piece.id) call.id = piece.id;
    if (piece.type === "function" && piece.function) {
      call.function ||= { name: "", arguments: "", output: null };
      if (piece.function.name) call.function.name = piece.function.name;
      if (piece.function.arguments) call.function.arguments += piece.function.arguments;
      if (piece.function.output !== undefined && piece.function.output !== null) {
        call.function.output = piece.function.output;
      }
    } else if (piece.type === "code_interpreter" && piece.code_interpreter) {
      call.code_interpreter ||= { input: "", outputs: [] };
      if (piece.code_interpreter.input) call.code_interpreter.input += piece.code_interpreter.input;
      for (const output of piece.code_interpreter.outputs || []) call.code_interpreter.outputs.push(output);
    } else if (piece.type === "file_search") {
      call.file_search = piece.file_search || call.file_search;
    }
  }
}
