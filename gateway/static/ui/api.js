// The one way the dashboard talks to the gateway: the public API, as any client uses it.
// Every request goes through `request()`, which adds the API key (when the user gave one) as
// `Authorization: Bearer`, the live event stream included (live.js reads it with fetch, so the
// key never goes into a URL), and turns the API's error shape {"error": {"code", "message", "details"}} into an ApiError.

// This file is served at <prefix>/ui/api.js: the API is at <prefix>/v2/api/.
const BASE = new URL('../v2/api/', import.meta.url);
const KEY_STORAGE = 'sparkgate.apiKey';

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

// The key lives in sessionStorage: this tab only, gone when it closes, never written to disk
// for the next visitor of a shared browser. `memoryKey` stands in where storage is refused.
let memoryKey = '';

export function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || '';
  } catch {
    return memoryKey;
  }
}

export function setApiKey(key) {
  memoryKey = key || '';
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage refused (private mode): the key lasts for this page only.
  }
}

// Earlier versions kept the key in localStorage, which outlives the tab: remove it.
try {
  localStorage.removeItem(KEY_STORAGE);
} catch {
  // No storage: nothing was kept either.
}

/** `path` is relative to /v2/api/ with its segments already encoded (see `seg`). */
export function apiUrl(path, query = {}) {
  const url = new URL(path.replace(/^\/+/, ''), BASE);
  for (const [name, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '') continue;
    for (const item of Array.isArray(value) ? value : [value]) {
      url.searchParams.append(name, String(item));
    }
  }
  return url;
}

/** One path segment (a name or an id), encoded. */
export function seg(value) {
  return encodeURIComponent(value);
}

/**
 * `quietForbidden`: the request is for a part of the page that only some roles see (a job's
 * deliveries: admins); its 403 is the caller's to handle, without the "may not do that" banner.
 */
export async function request(path, {
  method = 'GET', query, body, signal, accept, quietForbidden = false,
} = {}) {
  const headers = { Accept: accept || 'application/json' };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, signal, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(apiUrl(path, query), init);
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'network', `the gateway cannot be reached (${error.message})`, null);
  }
  if (!response.ok) throw await errorFrom(response, quietForbidden);
  return response;
}

export async function api(path, options) {
  const response = await request(path, options);
  return response.json();
}

async function errorFrom(response, quietForbidden) {
  let error = null;
  try {
    error = (await response.json()).error;
  } catch {
    // Not the API's JSON (a proxy's page): the status says enough.
  }
  const result = new ApiError(
    response.status,
    error?.code || 'http_error',
    error?.message || `${response.status} ${response.statusText}`.trim(),
    error?.details ?? null,
  );
  if (response.status === 401 || (response.status === 403 && !quietForbidden)) {
    window.dispatchEvent(new CustomEvent('sparkgate:auth', { detail: result }));
  }
  return result;
}

/** The command a user can run to do the same request with curl. */
export function curlCommand(method, path, query, body) {
  const parts = ['curl', '-sS'];
  if (method !== 'GET') parts.push('-X', method);
  parts.push(shellQuote(String(apiUrl(path, query))));
  if (apiKey()) parts.push('-H', '"Authorization: Bearer $SPARKGATE_API_KEY"');
  if (body !== undefined) {
    parts.push('-H', shellQuote('Content-Type: application/json'));
    parts.push('-d', shellQuote(JSON.stringify(body)));
  }
  return parts.join(' ');
}

function shellQuote(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}
