// Tenants: list, create, edit (models -> base model + adapter, limits, safety policy,
// metadata), disable/enable and delete.
import { PagedList, api, apiAll } from "../api.js";
import { h, uniqueId } from "../dom.js";
import { formatLimits, formatRoute, formatTime } from "../format.js";
import { confirmDialog, openDialog } from "../ui/dialog.js";
import {
  field,
  limitsFieldset,
  metadataToRows,
  modelsToRows,
  rowEditor,
  rowsToMetadata,
  rowsToModels,
  textInput,
} from "../ui/fields.js";
import { notice } from "../ui/notice.js";
import { badge, button, pageHeader } from "../ui/page.js";
import { dataTable } from "../ui/table.js";
import { toast } from "../ui/toast.js";

const BASE_MODELS_LIST = "known-base-models";
const ADAPTERS_LIST = "known-adapters";
const POLICIES_LIST = "known-safety-policies";
const MODEL_COLUMNS = [
  { name: "name", label: "Public name", placeholder: "public name, e.g. support" },
  {
    name: "base_model",
    label: "Base model",
    placeholder: "base model served by vLLM",
    list: BASE_MODELS_LIST,
  },
  {
    name: "adapter",
    label: "Adapter",
    placeholder: "LoRA adapter (optional)",
    list: ADAPTERS_LIST,
  },
];
const METADATA_COLUMNS = [
  { name: "key", label: "Key" },
  { name: "value", label: "Value" },
];

function tenantForm(tenant) {
  const name = textInput({ required: true, value: tenant?.name ?? "", maxlength: "64" });
  const models = rowEditor({
    legend: "Models",
    hint: "The names clients send as `model`, and where each goes. Leave the adapter blank for the base model.",
    columns: MODEL_COLUMNS,
    rows: tenant ? modelsToRows(tenant.models) : [],
    addLabel: "Add model",
  });
  const defaultModel = textInput({ value: tenant?.default_model ?? "" });
  const limits = limitsFieldset(tenant?.limits ?? {});
  const safetyPolicy = textInput({ value: tenant?.safety_policy ?? "", list: POLICIES_LIST });
  const metadata = rowEditor({
    legend: "Metadata",
    columns: METADATA_COLUMNS,
    rows: tenant ? metadataToRows(tenant.metadata) : [],
    addLabel: "Add metadata",
  });
  const enabled = h("input", {
    type: "checkbox",
    checked: tenant?.enabled ?? true,
    id: uniqueId("enabled"),
  });
  const body = [
    field("Name", name, "Letters, digits, dot, dash and underscore."),
    models.element,
    h(
      "div",
      { class: "grid two" },
      field(
        "Default model",
        defaultModel,
        "Used when a request names no model; one of the public names.",
      ),
      field("Safety policy", safetyPolicy, "The name of a safety policy; blank: none."),
    ),
    limits.element,
    metadata.element,
    tenant
      ? h("label", { class: "check", for: enabled.id }, enabled, "Enabled (its keys work)")
      : null,
  ];
  const read = () => ({
    name: name.value.trim(),
    models: rowsToModels(models.read()),
    default_model: defaultModel.value.trim() || null,
    limits: limits.read(),
    safety_policy: safetyPolicy.value.trim() || null,
    metadata: rowsToMetadata(metadata.read()),
    ...(tenant ? { enabled: enabled.checked } : {}),
  });
  return { body, read };
}

async function editTenant(tenant, refresh) {
  const form = tenantForm(tenant);
  const saved = await openDialog({
    title: tenant ? `Edit tenant ${tenant.name}` : "New tenant",
    body: form.body,
    submitLabel: tenant ? "Save tenant" : "Create tenant",
    wide: true,
    onSubmit: () =>
      tenant
        ? api("PATCH", `/tenants/${encodeURIComponent(tenant.id)}`, { body: form.read() })
        : api("POST", "/tenants", { body: form.read() }),
  });
  if (saved) {
    toast(tenant ? `Tenant ${saved.name} saved.` : `Tenant ${saved.name} created.`);
    await refresh();
  }
}

async function setEnabled(tenant, enabled, refresh) {
  const action = enabled ? "enable" : "disable";
  const done = await confirmDialog({
    title: `${enabled ? "Enable" : "Disable"} tenant ${tenant.name}?`,
    message: enabled
      ? "Its keys work again at once."
      : "Its keys stop working at once, until it is enabled again.",
    confirmLabel: enabled ? "Enable" : "Disable",
    action: () => api("POST", `/tenants/${encodeURIComponent(tenant.id)}/${action}`),
  });
  if (done) {
    toast(`Tenant ${tenant.name} ${action}d.`);
    await refresh();
  }
}

async function deleteTenant(tenant, refresh) {
  const done = await confirmDialog({
    title: `Delete tenant ${tenant.name}?`,
    message: "The tenant is deleted and all its keys are revoked. This cannot be undone.",
    confirmLabel: "Delete tenant",
    action: () => api("DELETE", `/tenants/${encodeURIComponent(tenant.id)}`),
  });
  if (done) {
    toast(`Tenant ${tenant.name} deleted.`);
    await refresh();
  }
}

function modelList(tenant) {
  const entries = Object.entries(tenant.models);
  if (entries.length === 0) return h("span", { class: "muted" }, "none");
  return h(
    "ul",
    { class: "plain" },
    entries.map(([name, route]) =>
      h(
        "li",
        {},
        h("code", {}, name),
        " → ",
        formatRoute(route),
        name === tenant.default_model ? h("span", { class: "muted" }, " (default)") : null,
      ),
    ),
  );
}

function tenantsTable(tenants, refresh) {
  return dataTable({
    caption: "Tenants",
    empty: "No tenants yet: create one to give a team its own models, limits and keys.",
    rows: tenants,
    columns: [
      { label: "Name", cell: (t) => [h("strong", {}, t.name), h("div", { class: "id" }, t.id)] },
      { label: "Models", cell: modelList },
      { label: "Limits", cell: (t) => formatLimits(t.limits) },
      {
        label: "Safety policy",
        cell: (t) => t.safety_policy ?? h("span", { class: "muted" }, "none"),
      },
      {
        label: "Status",
        cell: (t) => (t.enabled ? badge("enabled", "ok") : badge("disabled", "off")),
      },
      { label: "Created", cell: (t) => formatTime(t.created_at), class: "nowrap" },
      {
        label: "Actions",
        class: "row-actions",
        cell: (t) => [
          button("Edit", () => editTenant(t, refresh), {
            kind: "small",
            name: `Edit tenant ${t.name}`,
          }),
          h(
            "a",
            {
              class: "button small",
              href: `#/keys?tenant=${encodeURIComponent(t.id)}`,
              "aria-label": `Keys of ${t.name}`,
            },
            "Keys",
          ),
          t.enabled
            ? button("Disable", () => setEnabled(t, false, refresh), {
                kind: "small",
                name: `Disable tenant ${t.name}`,
              })
            : button("Enable", () => setEnabled(t, true, refresh), {
                kind: "small",
                name: `Enable tenant ${t.name}`,
              }),
          button("Delete", () => deleteTenant(t, refresh), {
            kind: "small danger",
            name: `Delete tenant ${t.name}`,
          }),
        ],
      },
    ],
  });
}

function datalist(id, names) {
  return h(
    "datalist",
    { id },
    [...new Set(names)].sort().map((name) => h("option", { value: name })),
  );
}

// Suggestions for the model editor: the registered adapters and the base models in use.
// The items of an optional admin API (a feature this gateway may not have), else none:
// they only feed suggestions, and every field stays free text.
async function itemsIfAvailable(path) {
  try {
    return await apiAll(path);
  } catch {
    return [];
  }
}

// Suggestions for the form: registered adapters, base models in use, stored safety policies.
async function suggestions(tenants) {
  const bases = tenants.flatMap((t) => Object.values(t.models).map((route) => route.base_model));
  const [adapters, policies] = await Promise.all([
    itemsIfAvailable("/adapters"),
    itemsIfAvailable("/safety/policies"),
  ]);
  return [
    datalist(BASE_MODELS_LIST, [...bases, ...adapters.map((a) => a.base_model)]),
    datalist(
      ADAPTERS_LIST,
      adapters.map((a) => a.name),
    ),
    datalist(
      POLICIES_LIST,
      policies.map((p) => p.name),
    ),
  ];
}

export async function render(view) {
  const problem = notice();
  const list = h("div", {}, h("p", { class: "muted" }, "Loading tenants…"));
  const lists = h("div");
  const tenants = new PagedList("/tenants");
  const more = button("Load more", () => load(true), { kind: "quiet" });
  more.hidden = true;
  async function load(append) {
    try {
      await (append ? tenants.more() : tenants.reload());
      list.replaceChildren(tenantsTable(tenants.records, refresh));
      more.hidden = !tenants.hasMore;
      lists.replaceChildren(...(await suggestions(tenants.records)));
      problem.clear();
    } catch (error) {
      if (!append) list.replaceChildren();
      problem.show(error);
    }
  }
  const refresh = () => load(false);
  view.append(
    pageHeader(
      "Tenants",
      button("New tenant", () => editTenant(null, refresh), { kind: "primary" }),
    ),
    problem.element,
    list,
    more,
    lists,
  );
  await refresh();
}
