// What the browser remembers besides the key: the threads created from this console, per key.

import { apiKey } from "./api.js";

// Not a secret hash: only keeps one key's threads apart from another's in this browser.
function keyTag() {
  let hash = 2166136261;
  for (const char of apiKey()) {
    hash ^= char.codePointAt(0);
    hash = Math.imul(hash, 16777619) >>> 0;
  }
  return hash.toString(16);
}

function storageName() {
  return `openassistants.threads.${keyTag()}`;
}

export function localThreads() {
  try {
    return JSON.parse(localStorage.getItem(storageName()) || "[]");
  } catch {
    return [];
  }
}

export function rememberThread(thread) {
  const threads = localThreads().filter((t) => t.id !== thread.id);
  threads.unshift({ id: thread.id, title: thread.title || "", assistant_id: thread.assistant_id || null, created_at: thread.created_at });
  localStorage.setItem(storageName(), JSON.stringify(threads.slice(0, 200)));
}

export function forgetThread(threadId) {
  localStorage.setItem(storageName(), JSON.stringify(localThreads().filter((t) => t.id !== threadId)));
}
