// Calls to the gateway's /api with the admin token from sessionStorage, sent as a header
// (never a cookie: no cross-site request can carry it).

const TOKEN_KEY = "quotaflow.adminToken";

export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function setToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled: the token lives for this page only */
  }
}

export function authHeaders() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** JSON call; resolves to the body on success, rejects with ApiError otherwise. */
export async function call(method, path, body, headers = authHeaders()) {
  const init = { method, headers: { Accept: "application/json", ...headers }, cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch {
    throw new ApiError(0, "the gateway is not reachable");
  }
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!resp.ok || (data && data.success === false)) {
    const message = (data && data.message) || `HTTP ${resp.status}`;
    throw new ApiError(resp.status, message);
  }
  return data;
}
