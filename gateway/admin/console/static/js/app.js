// The console's entry point: sign-in, navigation between pages (hash routes, so a reload
// stays on the page and nothing reaches the server's logs), and sign-out.
import { ApiError, api, whenUnauthorized } from "./api.js";
import { h } from "./dom.js";
import { adminKey, forgetAdminKey, keepAdminKey } from "./session.js";
import * as adapters from "./pages/adapters.js";
import * as audit from "./pages/audit.js";
import * as keys from "./pages/keys.js";
import * as requests from "./pages/requests.js";
import * as tenants from "./pages/tenants.js";
import * as usage from "./pages/usage.js";

const PAGES = {
  tenants: { title: "Tenants", module: tenants },
  keys: { title: "API keys", module: keys },
  adapters: { title: "Adapters", module: adapters },
  usage: { title: "Usage", module: usage },
  requests: { title: "Requests", module: requests },
  audit: { title: "Audit log", module: audit },
};
const DEFAULT_PAGE = "tenants";

const signin = document.getElementById("signin");
const signinForm = document.getElementById("signin-form");
const keyInput = document.getElementById("admin-key");
const signinError = document.getElementById("signin-error");
const shell = document.getElementById("shell");
const main = document.getElementById("main");

function showSignin(message = "") {
  shell.hidden = true;
  main.replaceChildren();
  signin.hidden = false;
  signinError.textContent = message;
  keyInput.value = "";
  keyInput.focus();
}

function showShell() {
  signin.hidden = true;
  shell.hidden = false;
  route(true);
}

// "#/keys?tenant=t_1" -> ("keys", URLSearchParams {tenant: "t_1"})
function parseHash() {
  const [path, search = ""] = window.location.hash.replace(/^#\/?/, "").split("?");
  return { name: path in PAGES ? path : DEFAULT_PAGE, params: new URLSearchParams(search) };
}

async function route(initial = false) {
  if (!adminKey()) return;
  const { name, params } = parseHash();
  const page = PAGES[name];
  document.title = `${page.title} · vllm-gateway console`;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === `#/${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  // Each visit renders into its own container, so a slow page left behind cannot write here.
  const view = h("div", { class: "view" });
  main.replaceChildren(view);
  await page.module.render(view, params);
  if (!initial && view.isConnected) view.querySelector("h1")?.focus();
}

signinForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (!key) {
    signinError.textContent = "Enter an admin key.";
    return;
  }
  keepAdminKey(key);
  try {
    await api("GET", "/tenants", { query: { limit: 1 } });
    keyInput.value = "";
    showShell();
  } catch (error) {
    forgetAdminKey();
    signinError.textContent = error instanceof ApiError ? error.describe() : error.message;
  }
});

document.getElementById("signout").addEventListener("click", () => {
  forgetAdminKey();
  showSignin("Signed out.");
});

whenUnauthorized((error) => {
  forgetAdminKey();
  showSignin(`Signed out: ${error.describe()}`);
});

window.addEventListener("hashchange", () => route());

if (adminKey()) showShell();
else showSignin();
