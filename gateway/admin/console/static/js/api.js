// The only way the console talks to the gateway: the documented admin API under /admin/v1,
// with the admin key in the Authorization header.
import { adminKey } from "./session.js";

const API_ROOT = "/admin/v1";
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, message, { param = null, code = null } = {}) {
    super(message);
    this.status = status;
    this.param = param;
    this.code = code;
  }

  // A route this gateway does not have (a feature not installed), as opposed to a missing record.
  get isUnknownRoute() {
    return this.status === 404 && this.code === "unknown_url";
  }

  describe() {
    return this.param ? `${this.message} (field: ${this.param})` : this.message;
  }
}

export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

export function apiUrl(path, query = {}) {
  const url = new URL(API_ROOT + path, window.location.origin);
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  return url;
}

async function errorFrom(response) {
  const fallback = `The gateway answered ${response.status} ${response.statusText}.`;
  try {
    const { error } = await response.json();
    if (error && typeof error.message === "string") {
      return new ApiError(response.status, error.message, error);
    }
  } catch {
    // Not the API's JSON error shape (e.g. a proxy's HTML page): describe the status instead.
  }
  return new ApiError(response.status, fallback);
}

// Calls the admin API and returns the parsed JSON (or the text, for CSV); throws ApiError.
export async function api(method, path, { query, body, accept = "application/json" } = {}) {
  const headers = { Authorization: `Bearer ${adminKey() ?? ""}`, Accept: accept };
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(apiUrl(path, query), init);
  } catch (failure) {
    throw new ApiError(0, `Could not reach the gateway: ${failure.message}`);
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401) onUnauthorized(error);
    throw error;
  }
  return accept === "application/json" ? response.json() : response.text();
}

const MAX_PAGE = 1000; // the admin API's largest page
export const PAGE_SIZE = 100;

// Every record of a paged list (`field` of each page), for lookups such as names by id.
export async function apiAll(path, { query = {}, field = "items" } = {}) {
  const records = [];
  let offset = 0;
  while (offset !== null) {
    const page = await api("GET", path, { query: { ...query, offset, limit: MAX_PAGE } });
    records.push(...page[field]);
    offset = page.next_offset;
  }
  return records;
}

// The records of a paged list read so far: `reload()` reads its first page again, `more()`
// adds the next one while `hasMore`. `query()` gives the filters, and `limit` to change the
// page size.
export class PagedList {
  constructor(path, query = () => ({})) {
    this.path = path;
    this.query = query;
    this.records = [];
    this.nextOffset = null;
  }

  get hasMore() {
    return this.nextOffset !== null;
  }

  async reload() {
    this.records = await this.#read(0);
  }

  async more() {
    this.records = this.records.concat(await this.#read(this.nextOffset));
  }

  async #read(offset) {
    const query = { limit: PAGE_SIZE, ...this.query(), offset };
    const page = await api("GET", this.path, { query });
    this.nextOffset = page.next_offset;
    return page.items;
  }
}
