// The heading row every page starts with; the heading takes focus after navigation so
// keyboard and screen-reader users land on the new page.
import { h } from "../dom.js";

export function pageHeader(title, ...actions) {
  return h(
    "div",
    { class: "page-header" },
    h("h1", { tabindex: "-1" }, title),
    h("div", { class: "actions" }, actions),
  );
}

// `name`: the accessible name when the visible label is ambiguous (a row's "Edit").
export function button(label, onClick, { kind = "", disabled = false, name } = {}) {
  return h(
    "button",
    { type: "button", class: kind || null, disabled, "aria-label": name, on: { click: onClick } },
    label,
  );
}

export function badge(text, kind) {
  return h("span", { class: `badge ${kind}` }, text);
}

export function unavailable(feature, error) {
  return h(
    "div",
    { class: "empty" },
    h("p", {}, h("strong", {}, `${feature} is not available on this gateway.`)),
    h("p", { class: "muted" }, `The admin API answered: ${error.describe()}`),
  );
}
