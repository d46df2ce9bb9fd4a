// The audit trail: every admin change, newest first, filtered by target, action and time.
import { PagedList, apiAll } from "../api.js";
import { h, uniqueId } from "../dom.js";
import { formatTime, fromLocalInput } from "../format.js";
import { field, textInput } from "../ui/fields.js";
import { notice } from "../ui/notice.js";
import { button, pageHeader } from "../ui/page.js";
import { dataTable } from "../ui/table.js";

const KNOWN_ACTIONS = [
  "tenant.create",
  "tenant.update",
  "tenant.disable",
  "tenant.enable",
  "tenant.delete",
  "key.create",
  "key.update",
  "key.revoke",
  "key.rotate",
  "adapter.register",
  "adapter.update",
  "adapter.delete",
  "safety_policy.put",
  "safety_policy.delete",
];
const LIMITS = [50, 100, 500, 1000];

const SUMMARY_FIELDS = 3;
const SUMMARY_CHARS = 40;

function shortValue(field, value) {
  if ((field.endsWith("_at") || field.endsWith("_until")) && typeof value === "number")
    return formatTime(value);
  const text = String(value);
  return text.length > SUMMARY_CHARS ? `${text.slice(0, SUMMARY_CHARS)}…` : text;
}

// "name=support, enabled=false +7 more": the set values that say most, the name first;
// the whole change is one click away.
function changeSummary(change) {
  const fields = Object.keys(change).filter(
    (field) => change[field] !== null && typeof change[field] !== "object",
  );
  fields.sort((a, b) => (b === "name") - (a === "name"));
  const shown = fields
    .slice(0, SUMMARY_FIELDS)
    .map((field) => `${field}=${shortValue(field, change[field])}`);
  const more = Object.keys(change).length - shown.length;
  return shown.join(", ") + (more > 0 ? ` +${more} more` : "");
}

function changeCell(entry) {
  if (Object.keys(entry.change).length === 0) return h("span", { class: "muted" }, "—");
  return h(
    "details",
    {},
    h("summary", {}, changeSummary(entry.change)),
    h("pre", {}, JSON.stringify(entry.change, null, 2)),
  );
}

export async function render(view, params) {
  const problem = notice();
  const list = h("div");
  const target = textInput({ value: params.get("target") ?? "", placeholder: "tenant or key id" });
  const actionsId = uniqueId("actions");
  const action = textInput({ list: actionsId, placeholder: "any" });
  const since = h("input", { type: "datetime-local" });
  const limit = h(
    "select",
    {},
    LIMITS.map((n) => h("option", { value: n, selected: n === 100 }, String(n))),
  );
  let names = new Map();
  const entries = new PagedList("/audit", () => ({
    target_id: target.value.trim(),
    action: action.value.trim(),
    since: fromLocalInput(since.value),
    limit: limit.value,
  }));
  const more = button("Load more", () => load(true), { kind: "quiet" });
  more.hidden = true;

  function targetCell(entry) {
    const name = names.get(entry.target_id);
    const filterBy = h(
      "button",
      {
        type: "button",
        class: "link",
        "aria-label": `Show only changes to ${entry.target_id}`,
        on: {
          click: () => {
            target.value = entry.target_id;
            load(false);
          },
        },
      },
      entry.target_id,
    );
    return [
      h("span", { class: "muted" }, `${entry.target_type} `),
      name ? h("strong", {}, name, " ") : null,
      h("div", { class: "id" }, filterBy),
    ];
  }

  async function load(append) {
    try {
      await (append ? entries.more() : entries.reload());
      problem.clear();
      more.hidden = !entries.hasMore;
      list.replaceChildren(
        dataTable({
          caption: "Audit log",
          empty: "No admin changes match.",
          rows: entries.records,
          columns: [
            { label: "When", cell: (e) => formatTime(e.at), class: "nowrap" },
            { label: "Action", cell: (e) => h("code", {}, e.action) },
            { label: "Target", cell: targetCell },
            { label: "Admin key", cell: (e) => h("span", { class: "id" }, e.admin_key_id) },
            { label: "Change", cell: changeCell },
          ],
        }),
      );
    } catch (error) {
      if (!append) list.replaceChildren();
      problem.show(error);
    }
  }

  const form = h(
    "form",
    {
      class: "filters",
      role: "search",
      "aria-label": "Filter the audit log",
      on: {
        submit: (event) => {
          event.preventDefault();
          load(false);
        },
      },
    },
    field("Target id", target),
    field("Action", action),
    h(
      "datalist",
      { id: actionsId },
      KNOWN_ACTIONS.map((name) => h("option", { value: name })),
    ),
    field("Since", since),
    field("Show", limit),
    h("div", { class: "field" }, h("button", { type: "submit", class: "primary" }, "Apply")),
  );
  view.append(pageHeader("Audit log"), form, problem.element, list, more);
  try {
    const [tenants, keys] = await Promise.all([apiAll("/tenants"), apiAll("/keys")]);
    names = new Map([...tenants, ...keys].map((record) => [record.id, record.name]));
  } catch {
    // Names are a convenience: the log still shows every target by id.
  }
  await load(false);
}
