// Requests: a tenant's usage records, one row per request, newest first; one request by its id
// (a billing dispute), and the same query exported as CSV or JSON lines.
import { PagedList, api, apiAll } from "../api.js";
import { h } from "../dom.js";
import { formatCount, utcDay } from "../format.js";
import { field, textInput } from "../ui/fields.js";
import { notice } from "../ui/notice.js";
import { badge, button, pageHeader, unavailable } from "../ui/page.js";
import { dataTable } from "../ui/table.js";
import { download } from "./usage.js";

const DEFAULT_DAYS = 7;
const DAY_MS = 86400000;
const EXPORTS = {
  csv: { label: "Export CSV", type: "text/csv" },
  jsonl: { label: "Export JSON lines", type: "application/jsonl" },
};

function pad(number, width = 2) {
  return String(number).padStart(width, "0");
}

// Local time to the millisecond: requests a few ms apart must read apart.
function formatInstant(unixSeconds) {
  const at = new Date(unixSeconds * 1000);
  const day = `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}`;
  const time = `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}`;
  return `${day} ${time}.${pad(at.getMilliseconds(), 3)}`;
}

function milliseconds(value) {
  return value === null ? "—" : `${value.toFixed(1)} ms`;
}

// The public model name, and under it what vLLM was asked for (the base model or an adapter).
function modelCell(record) {
  const model =
    record.model ??
    h("span", { class: "muted", title: "refused before its model was known" }, "unknown");
  return [h("div", {}, model), h("div", { class: "id" }, record.upstream_model ?? "—")];
}

function statusCell(record) {
  if (record.status === 0) return badge("0 failed", "off");
  return badge(String(record.status), record.status < 400 ? "ok" : "off");
}

function estimatedCell(record) {
  const shown = [record.estimated ? "yes" : "no"];
  if (record.aborted) shown.push(" ", badge("aborted", "off"));
  return shown;
}

export async function render(view, params) {
  const problem = notice();
  const list = h("div");
  const today = new Date();
  const tenant = h("select", { required: true });
  const requestId = textInput({ value: params.get("request_id") ?? "", placeholder: "any" });
  const from = h("input", {
    type: "date",
    value: utcDay(new Date(today.getTime() - (DEFAULT_DAYS - 1) * DAY_MS)),
  });
  const to = h("input", { type: "date", value: utcDay(today) });
  let keyNames = new Map();
  const query = () => ({
    tenant_id: tenant.value,
    request_id: requestId.value.trim(),
    from: from.value,
    to: to.value,
  });
  const records = new PagedList("/usage/records", query);
  const more = button("Load more", () => load(true), { kind: "quiet" });
  more.hidden = true;

  function keyCell(record) {
    const name = keyNames.get(record.key_id);
    return [name ? h("strong", {}, name) : null, h("div", { class: "id" }, record.key_id)];
  }

  async function load(append) {
    if (!tenant.value) {
      list.replaceChildren(h("p", { class: "empty" }, "No tenants yet."));
      return;
    }
    try {
      if (!append) {
        const keys = await apiAll("/keys", { query: { tenant_id: tenant.value } });
        keyNames = new Map(keys.map((k) => [k.id, k.name]));
      }
      await (append ? records.more() : records.reload());
      problem.clear();
      more.hidden = !records.hasMore;
      list.replaceChildren(
        dataTable({
          caption: "Requests, newest first",
          empty: "No requests in this period.",
          rows: records.records,
          columns: [
            { label: "Time", cell: (r) => formatInstant(r.time), class: "nowrap" },
            { label: "Request id", cell: (r) => h("span", { class: "id" }, r.request_id) },
            { label: "Key", cell: keyCell },
            { label: "Surface", cell: (r) => h("code", {}, r.endpoint) },
            { label: "Model / upstream", cell: modelCell, class: "nowrap" },
            { label: "Status", cell: statusCell },
            { label: "Prompt tokens", cell: (r) => formatCount(r.prompt_tokens), class: "number" },
            {
              label: "Completion tokens",
              cell: (r) => formatCount(r.completion_tokens),
              class: "number",
            },
            { label: "Latency", cell: (r) => milliseconds(r.latency_ms), class: "number nowrap" },
            { label: "TTFT", cell: (r) => milliseconds(r.ttft_ms), class: "number nowrap" },
            { label: "Estimated", cell: estimatedCell },
          ],
        }),
      );
    } catch (error) {
      if (!append) list.replaceChildren(error.isUnknownRoute ? unavailable("Requests", error) : "");
      if (append || !error.isUnknownRoute) problem.show(error);
      more.hidden = true;
    }
  }

  async function exportAs(format) {
    try {
      const { type } = EXPORTS[format];
      const text = await api("GET", "/usage/records", {
        query: { ...query(), format },
        accept: type,
      });
      download(text, `requests-${tenant.value}-${from.value}-to-${to.value}.${format}`, type);
    } catch (error) {
      problem.show(error);
    }
  }

  const form = h(
    "form",
    {
      class: "filters",
      role: "search",
      "aria-label": "Requests query",
      on: {
        submit: (event) => {
          event.preventDefault();
          load(false);
        },
      },
    },
    field("Tenant", tenant),
    field("Request id", requestId),
    field("From (UTC)", from),
    field("To (UTC)", to),
    h("div", { class: "field" }, h("button", { type: "submit", class: "primary" }, "Show")),
  );
  view.append(
    pageHeader(
      "Requests",
      ...Object.entries(EXPORTS).map(([format, { label }]) =>
        button(label, () => exportAs(format)),
      ),
    ),
    form,
    problem.element,
    list,
    more,
  );
  try {
    const tenants = await apiAll("/tenants");
    const chosen = params.get("tenant");
    tenant.append(
      ...tenants.map((t) => h("option", { value: t.id, selected: t.id === chosen }, t.name)),
    );
  } catch (error) {
    problem.show(error);
    return;
  }
  await load(false);
}
