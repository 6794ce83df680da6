// The console's entry point: the key, the theme, and a hash router over the views.

import { api, apiKey, onAuthError, setApiKey } from "./api.js";
import { showAssistants } from "./assistants.js";
import { showChat } from "./chat.js";
import { showFiles } from "./files.js";
import { showThreads } from "./threads.js";
import { clear, clearNotice, field, h, notify } from "./ui.js";
import { showVectorStores } from "./vector_stores.js";

const main = document.getElementById("main");
let leaveView = null;
let rendering = 0;

// --- theme: the system's (prefers-color-scheme) until the user picks one

const THEMES = ["system", "light", "dark"];
const themeButton = document.getElementById("theme-toggle");

function applyTheme(theme) {
  if (theme === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  themeButton.textContent = `Theme: ${theme}`;
  themeButton.setAttribute("aria-label", `Colour theme: ${theme}. Change`);
}

themeButton.addEventListener("click", () => {
  const current = localStorage.getItem("openassistants.theme") || "system";
  const next = THEMES[(THEMES.indexOf(current) + 1) % THEMES.length];
  localStorage.setItem("openassistants.theme", next);
  applyTheme(next);
});
applyTheme(localStorage.getItem("openassistants.theme") || "system");

// --- the key

const keyButton = document.getElementById("key-button");
keyButton.addEventListener("click", () => askForKey(apiKey() ? "Enter another API key, or forget this one." : ""));

function askForKey(message) {
  leave();
  const input = h("input", { type: "password", id: "api-key", autocomplete: "off", spellcheck: "false", required: true });
  const submit = h("button", { type: "submit", id: "use-key" }, "Use this key");
  const forget = apiKey() ? h("button", { type: "button", class: "secondary", id: "forget-key" }, "Forget the stored key") : null;
  const form = h(
    "form",
    { class: "panel stack auth", id: "auth", "aria-labelledby": "auth-title" },
    h("h2", { id: "auth-title" }, "API key"),
    h(
      "p",
      {},
      "This server needs one of its API keys (OPENASSISTANTS_API_KEYS). The key is kept in this browser's storage and sent as ",
      h("code", {}, "Authorization: Bearer"),
      " with every request.",
    ),
    message ? h("p", { class: "notice error", role: "alert", id: "auth-error" }, message) : null,
    field("API key", input),
    h("div", { class: "actions" }, submit, forget),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    setApiKey(input.value.trim());
    try {
      await api.get("/assistants", { limit: 1 });
    } catch (error) {
      submit.disabled = false;
      setApiKey("");
      askForKey(error.isAuth ? `That key was refused: ${error.message}` : error.message);
      return;
    }
    notify("Key accepted.", "success");
    route();
  });
  forget?.addEventListener("click", () => {
    setApiKey("");
    askForKey("The key was forgotten.");
  });
  clear(main, form);
  input.focus();
}

onAuthError((error) => {
  askForKey(apiKey() ? `The server refused the stored key: ${error.message}` : "This server needs an API key.");
});

// --- routes

const VIEWS = [
  [/^#\/assistants(?:\/([\w-]+))?$/, (match) => showAssistants(main, { id: match[1] })],
  [/^#\/chat(?:\?(.*))?$/, (match) => showChat(main, new URLSearchParams(match[1] || ""))],
  [/^#\/threads$/, () => showThreads(main)],
  [/^#\/files$/, () => showFiles(main)],
  [/^#\/vector-stores(?:\/([\w-]+))?$/, (match) => showVectorStores(main, { id: match[1] })],
];

function leave() {
  if (leaveView) leaveView();
  leaveView = null;
}

async function route() {
  leave();
  clearNotice();
  const hash = location.hash || "#/assistants";
  const section = hash.split(/[/?]/)[1];
  for (const link of document.querySelectorAll("nav a")) {
    link.toggleAttribute("aria-current", link.getAttribute("href") === `#/${section}`);
    if (link.hasAttribute("aria-current")) link.setAttribute("aria-current", "page");
  }
  const found = VIEWS.find(([pattern]) => pattern.test(hash));
  if (!found) {
    location.hash = "#/assistants";
    return;
  }
  const ticket = ++rendering;
  main.setAttribute("aria-busy", "true");
  try {
    const cleanup = await found[1](hash.match(found[0]));
    if (ticket === rendering && typeof cleanup === "function") leaveView = cleanup;
    else if (typeof cleanup === "function") cleanup();
  } catch (error) {
    // A 401 already brought up the key form (onAuthError).
    if (!error.isAuth && error.name !== "AbortError") {
      clear(main, h("section", { class: "panel" }, h("h2", {}, "Something went wrong"), h("p", { role: "alert" }, error.message)));
    }
  } finally {
    if (ticket === rendering) main.removeAttribute("aria-busy");
  }
}

window.addEventListener("hashchange", route);
route();
