// The page's client of gemserve's own API: the Interactions API (SSE), the Files API's
// resumable upload, and the models list. The same requests any SDK sends.

export const VERSION = "v1beta";
const KEY_STORE = "gemserve.playground.key";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Keys-required mode: the key the user typed, in sessionStorage only (gone with the tab).
// Open mode: a random key kept in localStorage, so this browser stays one tenant and finds
// its conversations again after a reload.
export function apiKey(requireKeys) {
  if (requireKeys) return sessionStorage.getItem(KEY_STORE);
  let key = localStorage.getItem(KEY_STORE);
  if (!key) {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    key = "playground-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    localStorage.setItem(KEY_STORE, key);
  }
  return key;
}

export function setSessionKey(key) {
  sessionStorage.setItem(KEY_STORE, key);
}

export function forgetSessionKey() {
  sessionStorage.removeItem(KEY_STORE);
}

async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body?.error?.message) message = body.error.message;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, message);
}

export async function call(key, method, path, body) {
  const headers = { "x-goog-api-key": key };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw await failure(response);
  return response.json();
}

export async function listModels(key) {
  const names = [];
  let token = "";
  do {
    const query = new URLSearchParams({ pageSize: "1000" });
    if (token) query.set("pageToken", token);
    const page = await call(key, "GET", `/${VERSION}/models?${query}`);
    for (const model of page.models ?? []) names.push(model);
    token = page.nextPageToken ?? "";
  } while (token);
  return names;
}

// POST /interactions with stream: true; calls onEvent(event) for every SSE data object.
export async function streamInteraction(key, body, onEvent, signal) {
  const response = await fetch(`/${VERSION}/interactions`, {
    method: "POST",
    headers: { "x-goog-api-key": key, "Content-Type": "application/json" },
    body: JSON.stringify({ ...body, stream: true }),
    signal,
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const data = block
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) onEvent(JSON.parse(data));
    }
  }
}

const CHUNK = 8 * 1024 * 1024; // the server's chunk granularity

// The Files API's resumable upload (what client.files.upload does): start with the key and
// X-Goog-Upload-* headers, then send the bytes to the returned URL; onProgress(fraction).
export async function uploadFile(key, file, onProgress) {
  const mimeType = file.type || "application/octet-stream";
  const start = await fetch(`/upload/${VERSION}/files`, {
    method: "POST",
    headers: {
      "x-goog-api-key": key,
      "Content-Type": "application/json",
      "X-Goog-Upload-Protocol": "resumable",
      "X-Goog-Upload-Command": "start",
      "X-Goog-Upload-Header-Content-Length": String(file.size),
      "X-Goog-Upload-Header-Content-Type": mimeType,
    },
    body: JSON.stringify({ file: { display_name: file.name, mime_type: mimeType } }),
  });
  if (!start.ok) throw await failure(start);
  const url = start.headers.get("X-Goog-Upload-URL");
  let offset = 0;
  for (;;) {
    const chunk = file.slice(offset, offset + CHUNK);
    const last = offset + chunk.size >= file.size;
    const answer = await sendChunk(url, chunk, offset, last, (loaded) =>
      onProgress(file.size ? (offset + loaded) / file.size : 1),
    );
    offset += chunk.size;
    if (last) return answer.file;
  }
}

// XMLHttpRequest rather than fetch: fetch reports no upload progress.
function sendChunk(url, chunk, offset, last, onLoaded) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-Goog-Upload-Command", last ? "upload, finalize" : "upload");
    xhr.setRequestHeader("X-Goog-Upload-Offset", String(offset));
    xhr.setRequestHeader("Content-Type", "application/json"); // as the SDKs label chunks
    xhr.upload.onprogress = (event) => onLoaded(event.loaded);
    xhr.onerror = () => reject(new ApiError(0, "The upload failed: network error."));
    xhr.onload = () => {
      let body = {};
      try {
        body = JSON.parse(xhr.responseText || "{}");
      } catch {
        // keep {}
      }
      if (xhr.status !== 200) {
        reject(new ApiError(xhr.status, body?.error?.message ?? `upload failed (${xhr.status})`));
      } else {
        onLoaded(chunk.size);
        resolve(body);
      }
    };
    xhr.send(chunk);
  });
}

// The content part type for a file, as the Interactions API names them.
export function partType(mimeType) {
  for (const kind of ["image", "audio", "video"]) {
    if (mimeType.startsWith(kind + "/")) return kind;
  }
  return "document";
}
