// Usage: requests and tokens per day, split by tenant, key or model, as stacked bar charts and
// a totals table; the same query exports as CSV.
import { api, apiAll } from "../api.js";
import { h } from "../dom.js";
import { legend, stackedBarChart } from "../chart.js";
import { formatCount, utcDay } from "../format.js";
import { field, textInput } from "../ui/fields.js";
import { notice } from "../ui/notice.js";
import { pageHeader, unavailable } from "../ui/page.js";
import { dataTable } from "../ui/table.js";

const DEFAULT_DAYS = 14;
const MAX_SERIES = 7; // the eighth colour is "other"
const DAY_MS = 86400000;
const COUNTERS = ["requests", "prompt_tokens", "completion_tokens", "errors", "rejected"];
const SPLITS = { tenant: "tenant_id", key: "key_id", model: "model" };

function daysBetween(from, to) {
  const days = [];
  for (let at = Date.parse(from); at <= Date.parse(to); at += DAY_MS)
    days.push(utcDay(new Date(at)));
  return days;
}

// Rows of (day, series value) -> one entry per series with per-day counters, largest first;
// series past MAX_SERIES fold into "other".
function toSeries(rows, days, seriesField, labelOf) {
  const byName = new Map();
  for (const row of rows) {
    const name = seriesField ? labelOf(row[seriesField]) : "all";
    if (!byName.has(name))
      byName.set(name, {
        name,
        perDay: new Map(),
        totals: Object.fromEntries(COUNTERS.map((c) => [c, 0])),
      });
    const series = byName.get(name);
    const day = series.perDay.get(row.day) ?? { requests: 0, tokens: 0 };
    day.requests += row.requests;
    day.tokens += row.total_tokens;
    series.perDay.set(row.day, day);
    for (const counter of COUNTERS) series.totals[counter] += row[counter];
  }
  const ranked = [...byName.values()].sort(
    (a, b) => b.totals.requests - a.totals.requests || a.name.localeCompare(b.name),
  );
  if (ranked.length > MAX_SERIES + 1) {
    const other = {
      name: "other",
      perDay: new Map(),
      totals: Object.fromEntries(COUNTERS.map((c) => [c, 0])),
    };
    for (const series of ranked.splice(MAX_SERIES)) {
      for (const [day, counts] of series.perDay) {
        const sum = other.perDay.get(day) ?? { requests: 0, tokens: 0 };
        sum.requests += counts.requests;
        sum.tokens += counts.tokens;
        other.perDay.set(day, sum);
      }
      for (const counter of COUNTERS) other.totals[counter] += series.totals[counter];
    }
    ranked.push(other);
  }
  const valuesOf = (series, measure) => days.map((day) => series.perDay.get(day)?.[measure] ?? 0);
  return ranked.map((series) => ({
    ...series,
    requests: valuesOf(series, "requests"),
    tokens: valuesOf(series, "tokens"),
  }));
}

function totalsTable(series, splitLabel) {
  const total = {
    name: "Total",
    totals: Object.fromEntries(
      COUNTERS.map((c) => [c, series.reduce((sum, s) => sum + s.totals[c], 0)]),
    ),
  };
  const count = (counter) => (s) => formatCount(s.totals[counter]);
  return dataTable({
    caption: "Usage totals",
    empty: "No usage in this period.",
    rows: series.length > 1 ? [...series, total] : series,
    columns: [
      { label: splitLabel, cell: (s) => (s === total ? h("strong", {}, s.name) : s.name) },
      { label: "Requests", cell: count("requests"), class: "number" },
      { label: "Prompt tokens", cell: count("prompt_tokens"), class: "number" },
      { label: "Completion tokens", cell: count("completion_tokens"), class: "number" },
      { label: "Errors", cell: count("errors"), class: "number" },
      { label: "Rejected", cell: count("rejected"), class: "number" },
    ],
  });
}

export function download(text, filename, type = "text/csv") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = h("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  URL.revokeObjectURL(url);
}

export async function render(view) {
  const problem = notice();
  const results = h("div");
  const today = new Date();
  const tenant = h("select", {}, h("option", { value: "" }, "All tenants"));
  const key = h("select", {}, h("option", { value: "" }, "All keys"));
  const model = textInput({ placeholder: "any" });
  const from = h("input", {
    type: "date",
    required: true,
    value: utcDay(new Date(today.getTime() - (DEFAULT_DAYS - 1) * DAY_MS)),
  });
  const to = h("input", { type: "date", required: true, value: utcDay(today) });
  const split = h(
    "select",
    {},
    ["tenant", "key", "model", "none"].map((name) =>
      h(
        "option",
        { value: name, selected: name === "tenant" },
        name === "none" ? "nothing (totals)" : name,
      ),
    ),
  );
  let tenantNames = new Map();
  let keyNames = new Map();

  const labelOf = (value) => {
    if (split.value === "tenant") return tenantNames.get(value) ?? value;
    if (split.value === "key") return keyNames.get(value) ?? value;
    return value ?? "(refused before its model was known)";
  };

  function query(format) {
    const groupBy = split.value === "none" ? "day" : `day,${split.value}`;
    return {
      tenant_id: tenant.value,
      key_id: key.value,
      model: model.value.trim(),
      from: from.value,
      to: to.value,
      group_by: groupBy,
      format,
    };
  }

  async function loadKeys() {
    const keys = await apiAll("/keys", { query: { tenant_id: tenant.value } });
    keyNames = new Map(keys.map((k) => [k.id, k.name]));
    key.replaceChildren(
      h("option", { value: "" }, "All keys"),
      ...keys.map((k) => h("option", { value: k.id }, `${k.name} (${k.prefix}…)`)),
    );
  }

  async function show() {
    try {
      const rows = await apiAll("/usage", { query: query("json"), field: "rows" });
      problem.clear();
      const days = daysBetween(from.value, to.value);
      const series = toSeries(rows, days, SPLITS[split.value], labelOf);
      const chartSeries = (measure) => series.map((s) => ({ name: s.name, values: s[measure] }));
      results.replaceChildren(
        h(
          "div",
          { class: "charts" },
          stackedBarChart({
            title: "Requests per day (UTC)",
            unit: "requests",
            days,
            series: chartSeries("requests"),
          }),
          stackedBarChart({
            title: "Tokens per day (prompt + completion, UTC)",
            unit: "tokens",
            days,
            series: chartSeries("tokens"),
          }),
        ),
        legend(series.map((s) => s.name)),
        totalsTable(
          series,
          split.value === "none" ? "Series" : split.value[0].toUpperCase() + split.value.slice(1),
        ),
      );
    } catch (error) {
      results.replaceChildren(error.isUnknownRoute ? unavailable("Usage reporting", error) : "");
      if (!error.isUnknownRoute) problem.show(error);
    }
  }

  async function exportCsv() {
    try {
      const csv = await api("GET", "/usage", { query: query("csv"), accept: "text/csv" });
      download(csv, `usage-${from.value}-to-${to.value}.csv`);
    } catch (error) {
      problem.show(error);
    }
  }

  tenant.addEventListener("change", () => loadKeys().catch((error) => problem.show(error)));
  const form = h(
    "form",
    {
      class: "filters",
      role: "search",
      "aria-label": "Usage query",
      on: {
        submit: (event) => {
          event.preventDefault();
          show();
        },
      },
    },
    field("Tenant", tenant),
    field("Key", key),
    field("Model", model),
    field("From (UTC)", from),
    field("To (UTC)", to),
    field("Split by", split),
    h("div", { class: "field" }, h("button", { type: "submit", class: "primary" }, "Show")),
  );
  view.append(
    pageHeader("Usage", h("button", { type: "button", on: { click: exportCsv } }, "Export CSV")),
    form,
    problem.element,
    results,
  );
  try {
    const tenants = await apiAll("/tenants");
    tenantNames = new Map(tenants.map((t) => [t.id, t.name]));
    tenant.append(...tenants.map((t) => h("option", { value: t.id }, t.name)));
    await loadKeys();
  } catch (error) {
    problem.show(error);
    return;
  }
  await show();
}
