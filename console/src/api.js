// The console's one door to the server: every request carries the API key the user typed in,
// as `Authorization: Bearer`, and nothing else authenticates it (no cookie): another site can
// neither read the key nor make the browser use it.

const KEY = "alcove.apiKey";
/** The control plane's base path (docs/protocol/control-plane.md, Base paths). */
export const B = "/v1/namespaces/default";

/** The stored key ("" when none). Kept in sessionStorage: it ends with the tab. */
export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

/** Stores (or with "" forgets) the key. */
export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

/** An answer that is not 2xx, with the server's error body when it sent one. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code || "";
  }
}

/** Called with every 401 (the key is missing or wrong): the app shows its login form. */
let onUnauthorized = () => {};
export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

/**
 * fetch() with the key. `body` that is not a Blob/ArrayBuffer/string is sent as JSON.
 * Answers the Response (2xx only); throws ApiError otherwise.
 */
export async function request(method, path, { body, headers = {}, raw = false } = {}) {
  const h = { ...headers };
  const key = apiKey();
  if (key) h.Authorization = `Bearer ${key}`;
  let payload = body;
  if (body !== undefined && !(body instanceof Blob) && !(body instanceof ArrayBuffer) && typeof body !== "string") {
    payload = JSON.stringify(body);
    h["Content-Type"] = "application/json";
  }
  const init = { method, headers: h, body: payload, credentials: "omit", cache: "no-store", redirect: "error" };
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    // Chromium aborts requests in flight when the host's addresses change (ERR_NETWORK_CHANGED),
    // which a browser on the server's own machine sees whenever a sandbox's veth comes or goes.
    // A read is safe to send again; a write is not (it may have been done).
    if (method !== "GET") throw err;
    await new Promise((r) => setTimeout(r, 300));
    resp = await fetch(path, init);
  }
  if (!resp.ok) {
    let err = null;
    try {
      err = await resp.json();
    } catch {
      // not an error body
    }
    if (resp.status === 401) onUnauthorized();
    throw new ApiError(resp.status, err);
  }
  if (raw) return resp;
  if (resp.status === 204) return null;
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}

export const get = (p, o) => request("GET", p, o);
export const post = (p, body, o = {}) => request("POST", p, { ...o, body });
export const del = (p, o) => request("DELETE", p, o);

/** The sandbox API of one sandbox through the proxy, addressed by path. */
export function sbx(id, rest) {
  return `/sandboxes/${encodeURIComponent(id)}/api/v1/${rest}`;
}

/** `?path=` as the file API reads it (form-urlencoded). */
export function pathQuery(p) {
  return new URLSearchParams({ path: p }).toString();
}
