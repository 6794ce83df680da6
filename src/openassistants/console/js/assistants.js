// Assistants: list, create, edit (model, instructions, tools, tool resources, metadata), delete.

import { api } from "./api.js";
import { clear, field, guarded, h, metadataEditor, notify, when } from "./ui.js";

const DEFAULT_PARAMETERS = '{\n  "type": "object",\n  "properties": {},\n  "required": []\n}';

export async function showAssistants(root, { id } = {}) {
  const list = h("ul", { class: "item-list", "aria-label": "Assistants" });
  const editor = h("section", { class: "panel editor", "aria-labelledby": "assistant-editor-title" });
  const create = h("button", { type: "button", id: "new-assistant" }, "New assistant");
  clear(
    root,
    h(
      "div",
      { class: "split" },
      h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Assistants"), create), list),
      editor,
    ),
  );

  const assistants = await api.all("/assistants");
  const refresh = (selected) => showAssistants(root, { id: selected });
  renderList(list, assistants, id);
  create.addEventListener("click", () => {
    location.hash = "#/assistants/new";
  });
  if (id === "new" || (!id && !assistants.length)) await renderEditor(editor, null, refresh);
  else {
    const current = assistants.find((a) => a.id === id) || assistants[0];
    await renderEditor(editor, current, refresh);
  }
}

function renderList(list, assistants, selectedId) {
  if (!assistants.length) list.append(h("li", { class: "muted" }, "No assistants yet."));
  for (const assistant of assistants) {
    const tools = assistant.tools.map((tool) => (tool.type === "function" ? tool.function.name : tool.type));
    list.append(
      h(
        "li",
        {},
        h(
          "a",
          {
            href: `#/assistants/${assistant.id}`,
            "aria-current": assistant.id === selectedId ? "page" : null,
          },
          h("strong", {}, assistant.name || "(unnamed)"),
          h("span", { class: "muted" }, ` ${assistant.model}`),
          h("small", { class: "muted block" }, tools.join(", ") || "no tools"),
        ),
      ),
    );
  }
}

async function renderEditor(editor, assistant, refresh) {
  const [files, stores, models] = await Promise.all([
    api.all("/files").catch(() => []),
    api.all("/vector_stores").catch(() => []),
    // The models the server's upstreams list and its routes name; free text still works without them.
    api.get("/models").then((page) => page.data, () => []),
  ]);
  const a = assistant || { tools: [], tool_resources: {}, metadata: {} };
  const has = (type) => a.tools.some((tool) => tool.type === type);

  const name = h("input", { type: "text", name: "name", value: a.name || "", maxlength: "256" });
  const modelOptions = h(
    "datalist",
    { id: "model-options" },
    models.map((m) => h("option", { value: m.id }, m.owned_by ? `${m.id} (${m.owned_by})` : m.id)),
  );
  const model = h("input", {
    type: "text",
    name: "model",
    value: a.model || "",
    required: true,
    list: "model-options",
    autocomplete: "off",
  });
  const temperature = numberInput("temperature", a.temperature, 0, 2);
  const topP = numberInput("top_p", a.top_p, 0, 1);
  const format = responseFormatEditor(a.response_format);
  const description = h("input", { type: "text", name: "description", value: a.description || "" });
  const instructions = h("textarea", { name: "instructions", rows: "5", value: a.instructions || "" });
  const codeInterpreter = h("input", { type: "checkbox", name: "code_interpreter", checked: has("code_interpreter") });
  const fileSearch = h("input", { type: "checkbox", name: "file_search", checked: has("file_search") });
  const functions = h("div", { class: "functions" });
  const addFunction = (tool) => functions.append(functionEditor(tool));
  a.tools.filter((tool) => tool.type === "function").forEach((tool) => addFunction(tool.function));
  const addFunctionButton = h("button", { type: "button", class: "secondary" }, "Add function");
  addFunctionButton.addEventListener("click", () => {
    addFunction(null);
    functions.lastElementChild.querySelector("input").focus();
  });

  const resources = a.tool_resources || {};
  const codeFiles = multiSelect(
    "code_interpreter_files",
    files.map((file) => [file.id, `${file.filename} (${file.id})`]),
    resources.code_interpreter?.file_ids || [],
  );
  const searchStores = multiSelect(
    "file_search_stores",
    stores.map((store) => [store.id, `${store.name || "(unnamed)"} (${store.id})`]),
    resources.file_search?.vector_store_ids || [],
  );
  const metadata = metadataEditor(a.metadata);

  const save = h("button", { type: "submit" }, assistant ? "Save" : "Create assistant");
  const form = h(
    "form",
    { class: "stack", "aria-labelledby": "assistant-editor-title" },
    field("Name", name),
    field("Model", model, models.length ? "Pick one the server lists, or type any name." : "The upstream model's name, e.g. gpt-4o or llama3.1."),
    modelOptions,
    field("Description", description),
    field("Instructions", instructions),
    h(
      "fieldset",
      {},
      h("legend", {}, "Tools"),
      h("label", { class: "check" }, codeInterpreter, " Code interpreter"),
      h("label", { class: "check" }, fileSearch, " File search"),
      h("h4", {}, "Functions"),
      functions,
      addFunctionButton,
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "Tool resources"),
      field("Code interpreter files", codeFiles, "Ctrl/Cmd+click or Shift+arrows to choose several."),
      field("File search vector stores", searchStores),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "Sampling and output"),
      field("Temperature", temperature, "0 to 2; empty: the model's default."),
      field("Top P", topP, "0 to 1; empty: the model's default."),
      format.element,
    ),
    metadata.element,
    h(
      "div",
      { class: "actions" },
      save,
      assistant && h("a", { class: "button secondary", href: `#/chat?assistant=${assistant.id}` }, "Chat"),
      assistant && deleteButton(assistant, refresh),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const tools = [];
    if (codeInterpreter.checked) tools.push({ type: "code_interpreter" });
    if (fileSearch.checked) tools.push({ type: "file_search" });
    for (const fn of functions.children) {
      const tool = fn.readFunction();
      if (!tool) return;
      tools.push({ type: "function", function: tool });
    }
    const responseFormat = format.value();
    if (responseFormat === undefined) return;
    const body = {
      temperature: temperature.value === "" ? null : Number(temperature.value),
      top_p: topP.value === "" ? null : Number(topP.value),
      response_format: responseFormat,
      name: name.value || null,
      model: model.value.trim(),
      description: description.value || null,
      instructions: instructions.value || null,
      tools,
      tool_resources: {
        code_interpreter: { file_ids: selected(codeFiles) },
        file_search: { vector_store_ids: selected(searchStores) },
      },
      metadata: metadata.value(),
    };
    const saved = await guarded(save, () =>
      api.post(assistant ? `/assistants/${assistant.id}` : "/assistants", body),
    );
    if (saved) {
      notify(`Saved ${saved.name || saved.id}.`, "success");
      if (assistant) await refresh(saved.id);
      else location.hash = `#/assistants/${saved.id}`;
    }
  });

  clear(
    editor,
    h("h2", { id: "assistant-editor-title" }, assistant ? `Edit ${assistant.name || assistant.id}` : "New assistant"),
    assistant && h("p", { class: "muted" }, h("code", {}, assistant.id), ` · created ${when(assistant.created_at)}`),
    form,
  );
}

function deleteButton(assistant, refresh) {
  const button = h("button", { type: "button", class: "danger" }, "Delete");
  button.addEventListener("click", async () => {
    if (!confirm(`Delete assistant ${assistant.name || assistant.id}?`)) return;
    const done = await guarded(button, () => api.delete(`/assistants/${assistant.id}`));
    if (done) {
      notify("Assistant deleted.", "success");
      if (location.hash === "#/assistants") await refresh();
      else location.hash = "#/assistants";
    }
  });
  return button;
}

function functionEditor(fn) {
  const f = fn || { name: "", description: "", parameters: null };
  const name = h("input", { type: "text", value: f.name, required: true, pattern: "[a-zA-Z0-9_\\-]{1,64}" });
  const description = h("input", { type: "text", value: f.description || "" });
  const parameters = h("textarea", {
    rows: "6",
    class: "mono",
    spellcheck: "false",
    value: f.parameters ? JSON.stringify(f.parameters, null, 2) : DEFAULT_PARAMETERS,
  });
  const remove = h("button", { type: "button", class: "link" }, "Remove function");
  const box = h(
    "div",
    { class: "function-tool" },
    field("Function name", name),
    field("Function description", description),
    field("Parameters (JSON schema)", parameters),
    remove,
  );
  remove.addEventListener("click", () => box.remove());
  box.readFunction = () => {
    let schema;
    try {
      schema = parameters.value.trim() ? JSON.parse(parameters.value) : undefined;
    } catch (error) {
      notify(`The parameters of function "${name.value}" are not valid JSON: ${error.message}`);
      parameters.focus();
      return null;
    }
    const tool = { name: name.value.trim() };
    if (description.value) tool.description = description.value;
    if (schema !== undefined) tool.parameters = schema;
    return tool;
  };
  return box;
}

function multiSelect(name, options, chosen) {
  const select = h("select", { name, multiple: true, size: String(Math.min(Math.max(options.length, 2), 6)) });
  for (const [value, label] of options) {
    select.append(h("option", { value, selected: chosen.includes(value) }, label));
  }
  // Ids the lists did not contain (another page, or deleted since) are kept, not silently dropped.
  for (const value of chosen) {
    if (!options.some(([v]) => v === value)) select.append(h("option", { value, selected: true }, value));
  }
  return select;
}

function selected(select) {
  return [...select.selectedOptions].map((option) => option.value);
}

function numberInput(name, value, min, max) {
  return h("input", {
    type: "number",
    name,
    min: String(min),
    max: String(max),
    step: "0.05",
    value: value === null || value === undefined ? "" : String(value),
  });
}

// response_format: "auto", text, json_object, or json_schema with its name and schema.
function responseFormatEditor(current) {
  const type = typeof current === "object" && current ? current.type : "auto";
  const choice = h(
    "select",
    { name: "response_format" },
    ["auto", "text", "json_object", "json_schema"].map((value) => h("option", { value, selected: value === type }, value)),
  );
  const schema = current?.json_schema;
  const schemaName = h("input", { type: "text", name: "json_schema_name", value: schema?.name || "", pattern: "[a-zA-Z0-9_\\-]{1,64}" });
  const schemaText = h("textarea", {
    rows: "6",
    class: "mono",
    name: "json_schema",
    spellcheck: "false",
    value: schema?.schema ? JSON.stringify(schema.schema, null, 2) : DEFAULT_PARAMETERS,
  });
  const strict = h("input", { type: "checkbox", name: "json_schema_strict", checked: Boolean(schema?.strict) });
  const schemaFields = h(
    "div",
    { class: "stack" },
    field("Schema name", schemaName),
    field("JSON schema", schemaText),
    h("label", { class: "check" }, strict, " Strict"),
  );
  const sync = () => (schemaFields.hidden = choice.value !== "json_schema");
  choice.addEventListener("change", sync);
  sync();
  return {
    element: h("div", {}, field("Response format", choice), schemaFields),
    // The request's value; undefined (after a notice) when the schema is not valid JSON.
    value() {
      if (choice.value === "auto") return "auto";
      if (choice.value !== "json_schema") return { type: choice.value };
      let parsed;
      try {
        parsed = JSON.parse(schemaText.value);
      } catch (error) {
        notify(`The response format's schema is not valid JSON: ${error.message}`);
        schemaText.focus();
        return undefined;
      }
      const jsonSchema = { name: schemaName.value.trim() || "response", schema: parsed, strict: strict.checked };
      return { type: "json_schema", json_schema: jsonSchema };
    },
  };
}
