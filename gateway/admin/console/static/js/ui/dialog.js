// Modal forms on <dialog>: the browser traps focus and closes on Escape. An API error keeps
// the dialog open with the API's message, so nothing typed is lost.
import { h, uniqueId } from "../dom.js";
import { notice } from "./notice.js";

// Resolves with what `onSubmit` returned, or null when cancelled.
export function openDialog({ title, body, submitLabel, onSubmit, danger = false, wide = false }) {
  const opener = document.activeElement;
  const problem = notice();
  const submit = h("button", { type: "submit", class: danger ? "danger" : "primary" }, submitLabel);
  const cancel = h("button", { type: "button", class: "quiet" }, "Cancel");
  const heading = h("h2", { id: uniqueId("dialog-title") }, title);
  const form = h(
    "form",
    { method: "dialog", class: "dialog-form" },
    heading,
    h("div", { class: "dialog-body" }, body),
    problem.element,
    h("div", { class: "dialog-actions" }, cancel, submit),
  );
  const dialog = h("dialog", { class: wide ? "wide" : null, "aria-labelledby": heading.id }, form);
  document.body.append(dialog);

  return new Promise((resolve) => {
    let result = null;
    cancel.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
      resolve(result);
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      submit.disabled = true;
      problem.clear();
      try {
        result = await onSubmit();
        dialog.close();
      } catch (error) {
        problem.show(error);
        submit.disabled = false;
      }
    });
    dialog.showModal();
  });
}

export function confirmDialog({ title, message, confirmLabel, action }) {
  return openDialog({
    title,
    body: [h("p", {}, message)],
    submitLabel: confirmLabel,
    onSubmit: action,
    danger: true,
  });
}
