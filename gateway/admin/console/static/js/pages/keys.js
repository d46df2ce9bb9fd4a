// API keys: list and filter, create (secret shown once), edit limits / models / expiry,
// revoke, and rotate with a grace period for the previous secret.
import { PagedList, api, apiAll } from "../api.js";
import { h } from "../dom.js";
import {
  formatDuration,
  formatLimits,
  formatTime,
  fromLocalInput,
  toLocalInput,
} from "../format.js";
import { confirmDialog, openDialog } from "../ui/dialog.js";
import {
  checkboxGroup,
  field,
  limitsFieldset,
  metadataToRows,
  rowEditor,
  rowsToMetadata,
  textInput,
} from "../ui/fields.js";
import { notice } from "../ui/notice.js";
import { badge, button, pageHeader } from "../ui/page.js";
import { showSecret } from "../ui/secret.js";
import { dataTable } from "../ui/table.js";
import { toast } from "../ui/toast.js";

const STATUS_BADGES = { active: "ok", revoked: "off", expired: "warn" };
const METADATA_COLUMNS = [
  { name: "key", label: "Key" },
  { name: "value", label: "Value" },
];
const MODELS_HINT = "Tick none to allow all of the tenant's models.";

function keyPath(key, action = "") {
  return `/keys/${encodeURIComponent(key.id)}${action}`;
}

function expiryInput(expiresAt) {
  return h("input", { type: "datetime-local", value: toLocalInput(expiresAt) });
}

function tenantSelect(tenants, selected) {
  const options = tenants.map((t) =>
    h("option", { value: t.id, selected: t.id === selected }, t.name),
  );
  return h("select", { required: true }, options);
}

function modelNames(tenant) {
  return tenant ? Object.keys(tenant.models) : [];
}

async function createKey(tenants, preselected, refresh) {
  const byId = new Map(tenants.map((t) => [t.id, t]));
  const tenant = tenantSelect(tenants, preselected);
  const name = textInput({ required: true, maxlength: "64" });
  const expires = expiryInput(null);
  const models = checkboxGroup({
    legend: "Allowed models",
    hint: MODELS_HINT,
    options: modelNames(byId.get(tenant.value)),
  });
  tenant.addEventListener("change", () => models.setOptions(modelNames(byId.get(tenant.value))));
  const limits = limitsFieldset({}, "Limits (override the tenant's)");
  const metadata = rowEditor({
    legend: "Metadata",
    columns: METADATA_COLUMNS,
    rows: [],
    addLabel: "Add metadata",
  });
  const created = await openDialog({
    title: "New API key",
    wide: true,
    submitLabel: "Create key",
    body: [
      h(
        "div",
        { class: "grid two" },
        field("Tenant", tenant),
        field("Name", name, "Letters, digits, dot, dash and underscore."),
      ),
      field("Expires", expires, "Blank: never expires."),
      models.element,
      limits.element,
      metadata.element,
    ],
    onSubmit: () => {
      const body = keyFields({ name, expires, models, limits, metadata });
      return api("POST", "/keys", { body: { tenant_id: tenant.value, ...body } });
    },
  });
  if (created) {
    await refresh();
    await showSecret({ title: `Key ${created.name} created`, secret: created.secret });
  }
}

// The fields a key's create and edit dialogs share, as the admin API takes them.
function keyFields({ name, expires, models, limits, metadata }) {
  const allowed = models.read();
  return {
    name: name.value.trim(),
    expires_at: fromLocalInput(expires.value),
    allowed_models: allowed.length ? allowed : null,
    limits: limits.read(),
    metadata: rowsToMetadata(metadata.read()),
  };
}

async function editKey(key, tenant, refresh) {
  const name = textInput({ required: true, maxlength: "64", value: key.name });
  const expires = expiryInput(key.expires_at);
  const models = checkboxGroup({
    legend: "Allowed models",
    hint: MODELS_HINT,
    options: modelNames(tenant),
    checked: key.allowed_models ?? [],
  });
  const limits = limitsFieldset(key.limits, "Limits (override the tenant's)");
  const metadata = rowEditor({
    legend: "Metadata",
    columns: METADATA_COLUMNS,
    rows: metadataToRows(key.metadata),
    addLabel: "Add metadata",
  });
  const saved = await openDialog({
    title: `Edit key ${key.name}`,
    wide: true,
    submitLabel: "Save key",
    body: [
      field("Name", name),
      field("Expires", expires, "Blank: never expires."),
      models.element,
      limits.element,
      metadata.element,
    ],
    onSubmit: () => {
      const body = keyFields({ name, expires, models, limits, metadata });
      return api("PATCH", keyPath(key), { body });
    },
  });
  if (saved) {
    toast(`Key ${saved.name} saved.`);
    await refresh();
  }
}

async function rotateKey(key, refresh) {
  const grace = h("input", {
    type: "number",
    min: "0",
    step: "1",
    value: "3600",
    inputmode: "numeric",
  });
  const rotated = await openDialog({
    title: `Rotate key ${key.name}`,
    submitLabel: "Rotate key",
    body: [
      h(
        "p",
        {},
        "A new secret is created and shown once. The current secret keeps working during the grace period, so clients can switch without downtime.",
      ),
      field("Grace period (seconds)", grace, "0: the current secret stops working at once."),
    ],
    onSubmit: () =>
      api("POST", keyPath(key, "/rotate"), { body: { grace_period_s: Number(grace.value || 0) } }),
  });
  if (rotated) {
    await refresh();
    const seconds = Number(grace.value || 0);
    const note = rotated.grace_until
      ? `The previous secret works for ${formatDuration(seconds)} more, until ${formatTime(rotated.grace_until)}.`
      : "The previous secret no longer works.";
    await showSecret({ title: `Key ${rotated.name} rotated`, secret: rotated.secret, note });
  }
}

async function revokeKey(key, refresh) {
  const done = await confirmDialog({
    title: `Revoke key ${key.name}?`,
    message: `Requests with this key (${key.prefix}…) are refused at once. This cannot be undone.`,
    confirmLabel: "Revoke key",
    action: () => api("POST", keyPath(key, "/revoke")),
  });
  if (done) {
    toast(`Key ${key.name} revoked.`);
    await refresh();
  }
}

function modelList(names) {
  return h(
    "ul",
    { class: "plain" },
    names.map((name) => h("li", {}, h("code", {}, name))),
  );
}

function statusCell(key) {
  const inGrace = key.grace_until && key.grace_until * 1000 > Date.now();
  return [
    badge(key.status, STATUS_BADGES[key.status]),
    inGrace
      ? h("div", { class: "muted nowrap" }, `old secret works until ${formatTime(key.grace_until)}`)
      : null,
  ];
}

function keysTable(keys, tenantsById, refresh) {
  const tenantName = (key) => tenantsById.get(key.tenant_id)?.name ?? key.tenant_id;
  return dataTable({
    caption: "API keys",
    empty: "No keys match.",
    rows: keys,
    columns: [
      { label: "Name", cell: (k) => [h("strong", {}, k.name), h("div", { class: "id" }, k.id)] },
      { label: "Prefix", cell: (k) => h("code", {}, `${k.prefix}…`) },
      { label: "Tenant", cell: tenantName, class: "nowrap" },
      { label: "Status", cell: statusCell },
      {
        label: "Models",
        cell: (k) =>
          k.allowed_models ? modelList(k.allowed_models) : h("span", { class: "muted" }, "all"),
      },
      { label: "Limits", cell: (k) => formatLimits(k.limits) },
      {
        label: "Expires",
        cell: (k) => (k.expires_at ? formatTime(k.expires_at) : "never"),
        class: "nowrap",
      },
      { label: "Last used", cell: (k) => formatTime(k.last_used_at), class: "nowrap" },
      {
        label: "Actions",
        class: "row-actions",
        cell: (k) => {
          const revoked = k.status === "revoked";
          return [
            button("Edit", () => editKey(k, tenantsById.get(k.tenant_id), refresh), {
              kind: "small",
              name: `Edit key ${k.name}`,
            }),
            button("Rotate", () => rotateKey(k, refresh), {
              kind: "small",
              disabled: revoked,
              name: `Rotate key ${k.name}`,
            }),
            button("Revoke", () => revokeKey(k, refresh), {
              kind: "small danger",
              disabled: revoked,
              name: `Revoke key ${k.name}`,
            }),
          ];
        },
      },
    ],
  });
}

export async function render(view, params) {
  const problem = notice();
  const list = h("div", {}, h("p", { class: "muted" }, "Loading keys…"));
  const more = button("Load more", () => load(true), { kind: "quiet" });
  more.hidden = true;
  let tenants = [];

  const tenantFilter = h("select", {}, h("option", { value: "" }, "All tenants"));
  const statusFilter = h(
    "select",
    {},
    ["any", "active", "revoked", "expired"].map((s) =>
      h("option", { value: s === "any" ? "" : s }, s === "any" ? "Any status" : s),
    ),
  );
  const search = textInput({ type: "search", placeholder: "name or prefix" });

  const keys = new PagedList("/keys", () => ({ tenant_id: tenantFilter.value }));

  function showKeys() {
    const text = search.value.trim().toLowerCase();
    const shown = keys.records.filter(
      (k) =>
        (!statusFilter.value || k.status === statusFilter.value) &&
        (!text || k.name.toLowerCase().includes(text) || k.prefix.toLowerCase().includes(text)),
    );
    list.replaceChildren(
      keysTable(shown, new Map(tenants.map((t) => [t.id, t])), () => load(false)),
    );
    more.hidden = !keys.hasMore;
  }

  async function load(append) {
    try {
      await (append ? keys.more() : keys.reload());
      problem.clear();
      showKeys();
    } catch (error) {
      problem.show(error);
    }
  }

  tenantFilter.addEventListener("change", () => load(false));
  statusFilter.addEventListener("change", showKeys);
  search.addEventListener("input", showKeys);
  view.append(
    pageHeader(
      "API keys",
      button("New key", () => createKey(tenants, tenantFilter.value, () => load(false)), {
        kind: "primary",
      }),
    ),
    h(
      "div",
      { class: "filters", role: "search", "aria-label": "Filter keys" },
      field("Tenant", tenantFilter),
      field("Status", statusFilter),
      field("Search", search),
    ),
    problem.element,
    list,
    more,
  );
  try {
    tenants = await apiAll("/tenants");
  } catch (error) {
    problem.show(error);
    return;
  }
  tenantFilter.append(
    ...tenants.map((t) =>
      h("option", { value: t.id, selected: t.id === params.get("tenant") }, t.name),
    ),
  );
  await load(false);
}
