// The console's only way to the server: the public /v1 API, with the key the user gave.

import { parseEventStream } from "./sse.js";

const KEY_STORAGE = "openassistants.apiKey";

export class APIError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `The server answered ${status}.`);
    this.status = status;
    this.type = error.type || null;
    this.code = error.code || null;
    this.param = error.param || null;
  }

  get isAuth() {
    return this.status === 401;
  }
}

export function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

// Listeners told when a call is refused for its key (401), so the page can ask for another one.
const authListeners = new Set();
export function onAuthError(listener) {
  authListeners.add(listener);
}

function headers(extra = {}) {
  const h = { "OpenAI-Beta": "assistants=v2", ...extra };
  const key = apiKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's error page): the status says enough.
  }
  const error = new APIError(response.status, body);
  if (error.isAuth) authListeners.forEach((listener) => listener(error));
  return error;
}

async function send(method, path, { body, query, form, signal } = {}) {
  const url = new URL(`/v1${path}`, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value === undefined || value === null) continue;
    for (const item of Array.isArray(value) ? value : [value]) url.searchParams.append(name, item);
  }
  const init = { method, headers: headers(), signal };
  if (form) {
    init.body = form;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (cause) {
    if (cause.name === "AbortError") throw cause;
    throw new APIError(0, { error: { message: `Could not reach the server (${cause.message}).` } });
  }
  if (!response.ok) throw await failure(response);
  return response;
}

export const api = {
  async get(path, query) {
    return (await send("GET", path, { query })).json();
  },
  async post(path, body) {
    return (await send("POST", path, { body: body ?? {} })).json();
  },
  async delete(path) {
    return (await send("DELETE", path)).json();
  },
  async upload(file, purpose = "assistants") {
    const form = new FormData();
    form.append("purpose", purpose);
    form.append("file", file, file.name);
    return (await send("POST", "/files", { form })).json();
  },
  // A file's bytes, fetched with the key (a plain link could not send it).
  async fileBlob(fileId) {
    return (await send("GET", `/files/${encodeURIComponent(fileId)}/content`)).blob();
  },
  // Every page of a list, following the cursors (for the small lists the console shows whole).
  async all(path, query = {}, most = 1000) {
    const items = [];
    let after;
    for (;;) {
      const page = await api.get(path, { limit: 100, ...query, after });
      items.push(...page.data);
      if (!page.has_more || items.length >= most) return items;
      after = page.last_id;
    }
  },
  // POST with stream: true, yielding each server-sent event as {event, data} with data parsed.
  stream(path, body, signal) {
    return events(send("POST", path, { body: { ...body, stream: true }, signal }));
  },
  // A run's events after the numbered one `after` (GET …/events, an OpenAssistants extension).
  follow(path, after, signal) {
    return events(send("GET", path, { query: { after }, signal }));
  },
};

async function* events(responding) {
  const response = await responding;
  for await (const message of parseEventStream(response.body)) {
    let data = message.data;
    if (data && data !== "[DONE]") {
      try {
        data = JSON.parse(data);
      } catch {
        // Leave it as text: an event we do not know need not be JSON.
      }
    }
    yield { event: message.event, data, id: message.id };
  }
}
