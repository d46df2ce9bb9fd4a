// The admin key lives in this tab's sessionStorage only: it survives a reload, dies with the
// tab, is never written to a cookie (so no request carries it implicitly: CSRF-safe) and
// never appears in a URL.
const STORAGE_KEY = "vllm-gateway.admin-key";

export function adminKey() {
  return sessionStorage.getItem(STORAGE_KEY);
}

export function keepAdminKey(key) {
  sessionStorage.setItem(STORAGE_KEY, key);
}

export function forgetAdminKey() {
  sessionStorage.removeItem(STORAGE_KEY);
}
