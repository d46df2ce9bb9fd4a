// LoRA adapters: the registry (name, base model, owning tenant, rank, path on the vLLM host)
// and, where the gateway reports its replicas, which of them hold each adapter right now.
import { PagedList, api, apiAll } from "../api.js";
import { h } from "../dom.js";
import { formatTime } from "../format.js";
import { notice } from "../ui/notice.js";
import { badge, button, pageHeader, unavailable } from "../ui/page.js";
import { dataTable } from "../ui/table.js";

// Replicas holding `name`, each marked "running" (in a LoRA slot now) or "loaded".
function placement(name, replicas) {
  const holders = replicas.filter((replica) => replica.adapters.includes(name));
  if (holders.length === 0) return badge("not loaded", "warn");
  return h(
    "ul",
    { class: "plain" },
    holders.map((replica) =>
      h(
        "li",
        {},
        replica.running.includes(name) ? badge("running", "ok") : badge("loaded", "ok"),
        " ",
        h("code", {}, replica.url),
      ),
    ),
  );
}

function replicasTable(replicas) {
  return dataTable({
    caption: "Replicas",
    empty: "No replicas configured.",
    rows: replicas,
    columns: [
      { label: "Replica", cell: (r) => h("code", {}, r.url) },
      {
        label: "Health",
        cell: (r) => (r.healthy ? badge("healthy", "ok") : badge("ejected", "off")),
      },
      {
        label: "Adapter slots",
        cell: (r) => `${r.adapters.length} of ${r.max_lora ?? "?"}`,
        class: "number",
      },
      {
        label: "Adapters held",
        cell: (r) => r.adapters.join(", ") || h("span", { class: "muted" }, "none"),
      },
    ],
  });
}

function adaptersTable(adapters, tenantNames, replicas) {
  const columns = [
    { label: "Name", cell: (a) => h("strong", {}, a.name) },
    { label: "Base model", cell: (a) => a.base_model },
    {
      label: "Owner",
      cell: (a) =>
        a.tenant_id
          ? (tenantNames.get(a.tenant_id) ?? a.tenant_id)
          : h("span", { class: "muted" }, "shared"),
    },
    { label: "Rank", cell: (a) => a.rank ?? "—", class: "number" },
    { label: "Path on the vLLM host", cell: (a) => h("code", {}, a.path) },
  ];
  if (replicas) columns.push({ label: "Loaded on", cell: (a) => placement(a.name, replicas) });
  columns.push({ label: "Registered", cell: (a) => formatTime(a.created_at), class: "nowrap" });
  return dataTable({
    caption: "LoRA adapters",
    empty: "No adapters registered.",
    rows: adapters,
    columns,
  });
}

export async function render(view) {
  const problem = notice();
  const registry = h("div", {}, h("p", { class: "muted" }, "Loading adapters…"));
  const placements = h("section", { "aria-label": "Replicas" });
  const adapters = new PagedList("/adapters");
  const more = button("Load more", () => showAdapters(true), { kind: "quiet" });
  more.hidden = true;
  let tenantNames = new Map();
  let replicas = null;

  async function showAdapters(append) {
    try {
      await (append ? adapters.more() : adapters.reload());
      registry.replaceChildren(adaptersTable(adapters.records, tenantNames, replicas));
      more.hidden = !adapters.hasMore;
    } catch (error) {
      if (!append) {
        registry.replaceChildren(
          error.isUnknownRoute ? unavailable("The adapter registry", error) : "",
        );
      }
      if (!error.isUnknownRoute) problem.show(error);
    }
  }

  async function refresh() {
    problem.clear();
    replicas = null;
    try {
      ({ items: replicas } = await api("GET", "/replicas"));
      placements.replaceChildren(h("h2", {}, "Replicas"), replicasTable(replicas));
    } catch (error) {
      if (!error.isUnknownRoute) problem.show(error);
      placements.replaceChildren(
        h(
          "p",
          { class: "hint" },
          `Which replica holds each adapter is not shown: ${error.describe()}`,
        ),
      );
    }
    await showAdapters(false);
  }

  view.append(
    pageHeader("Adapters", button("Refresh", refresh)),
    problem.element,
    registry,
    more,
    placements,
  );
  try {
    const tenants = await apiAll("/tenants");
    tenantNames = new Map(tenants.map((t) => [t.id, t.name]));
  } catch (error) {
    problem.show(error);
  }
  await refresh();
}
