// The console's only door to the node: the public API, with the token in an Authorization
// header. Browsers never attach that header on their own, so another site cannot make the
// console's user change anything (no CSRF), and no cookie is ever sent (credentials: omit).

import { session } from "./session.js";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store", redirect: "error",
    });
  } catch (error) {
    throw new ApiError(0, "unreachable", `the node did not answer (${error.message})`);
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    const failure = new ApiError(response.status, error.code, error.message || response.statusText, error.details);
    if (response.status === 401) window.dispatchEvent(new CustomEvent("jobnode:unauthorized", { detail: failure }));
    throw failure;
  }
  return data;
}
