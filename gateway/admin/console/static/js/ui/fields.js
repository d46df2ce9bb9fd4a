// Form controls with visible labels tied to their inputs, and readers that turn them into the
// admin API's JSON (blank means "not set": null).
import { h, uniqueId } from "../dom.js";
import { LIMIT_NAMES } from "../format.js";

const LIMIT_LABELS = {
  requests_per_minute: "Requests per minute",
  tokens_per_minute: "Tokens per minute",
  max_concurrent: "Concurrent requests",
  tokens_per_day: "Tokens per day",
  tokens_per_month: "Tokens per month",
};

export function field(label, input, hint) {
  input.id ||= uniqueId("field");
  const parts = [h("label", { for: input.id }, label), input];
  if (hint) {
    const hintId = uniqueId("hint");
    input.setAttribute("aria-describedby", hintId);
    parts.push(h("p", { class: "hint", id: hintId }, hint));
  }
  return h("div", { class: "field" }, parts);
}

export function textInput(props = {}) {
  return h("input", { type: "text", autocomplete: "off", spellcheck: "false", ...props });
}

export function limitsFieldset(limits = {}, legend = "Limits") {
  const inputs = Object.fromEntries(
    LIMIT_NAMES.map((name) => [
      name,
      h("input", {
        type: "number",
        min: "0",
        step: "1",
        inputmode: "numeric",
        value: limits[name] ?? "",
      }),
    ]),
  );
  const element = h(
    "fieldset",
    { class: "limits" },
    h("legend", {}, legend),
    h("p", { class: "hint" }, "Blank: not limited here."),
    h(
      "div",
      { class: "grid" },
      LIMIT_NAMES.map((name) => field(LIMIT_LABELS[name], inputs[name])),
    ),
  );
  return {
    element,
    read: () =>
      Object.fromEntries(
        LIMIT_NAMES.map((name) => [
          name,
          inputs[name].value === "" ? null : Number(inputs[name].value),
        ]),
      ),
  };
}

// Editable rows of text inputs (model routes, metadata); wholly blank rows are dropped.
export function rowEditor({ legend, columns, rows, addLabel, hint }) {
  const body = h("div", { class: "rows" });
  const element = h(
    "fieldset",
    { class: "row-editor" },
    h("legend", {}, legend),
    hint ? h("p", { class: "hint" }, hint) : null,
    body,
    h(
      "button",
      { type: "button", class: "quiet", on: { click: () => addRow({}, true) } },
      addLabel,
    ),
  );

  function addRow(values, focus = false) {
    const inputs = columns.map((column) =>
      textInput({
        "aria-label": column.label,
        placeholder: column.placeholder ?? column.label,
        value: values[column.name] ?? "",
        list: column.list,
      }),
    );
    const row = h(
      "div",
      { class: "row" },
      inputs,
      h(
        "button",
        {
          type: "button",
          class: "quiet",
          "aria-label": `Remove ${legend.toLowerCase()} row`,
          on: { click: () => row.remove() },
        },
        "Remove",
      ),
    );
    row.inputs = inputs;
    body.append(row);
    if (focus) inputs[0].focus();
  }

  for (const values of rows) addRow(values);
  if (rows.length === 0) addRow({});
  return {
    element,
    read: () =>
      [...body.children]
        .map((row) =>
          Object.fromEntries(columns.map((column, i) => [column.name, row.inputs[i].value.trim()])),
        )
        .filter((values) => Object.values(values).some((value) => value !== "")),
  };
}

// Checkboxes for a set of names; `options` can change (e.g. another tenant picked).
export function checkboxGroup({ legend, hint, options, checked = [] }) {
  const list = h("div", { class: "checks" });
  const element = h(
    "fieldset",
    { class: "check-group" },
    h("legend", {}, legend),
    h("p", { class: "hint" }, hint),
    list,
  );
  function setOptions(names, ticked = []) {
    list.replaceChildren();
    if (names.length === 0) list.append(h("p", { class: "muted" }, "This tenant has no models."));
    for (const name of names) {
      const box = h("input", {
        type: "checkbox",
        value: name,
        checked: ticked.includes(name),
        id: uniqueId("check"),
      });
      list.append(h("label", { class: "check", for: box.id }, box, name));
    }
  }
  setOptions(options, checked);
  return {
    element,
    setOptions,
    read: () => [...list.querySelectorAll("input:checked")].map((box) => box.value),
  };
}

export function modelsToRows(models) {
  return Object.entries(models).map(([name, route]) => ({
    name,
    base_model: route.base_model,
    adapter: route.adapter ?? "",
  }));
}

export function rowsToModels(rows) {
  return Object.fromEntries(
    rows.map((row) => [
      row.name,
      row.adapter
        ? { base_model: row.base_model, adapter: row.adapter }
        : { base_model: row.base_model },
    ]),
  );
}

export function rowsToMetadata(rows) {
  return Object.fromEntries(rows.map((row) => [row.key, row.value]));
}

export function metadataToRows(metadata) {
  return Object.entries(metadata).map(([key, value]) => ({ key, value }));
}
