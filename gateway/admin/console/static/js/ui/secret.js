// Shows a new key secret once, with a copy button: the API never shows it again.
import { h, uniqueId } from "../dom.js";

async function copyText(input) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(input.value);
    return;
  }
  // Plain-HTTP consoles have no Clipboard API: copy the selection the legacy way.
  input.select();
  if (!document.execCommand("copy")) throw new Error("the browser refused to copy");
}

export function showSecret({ title, secret, note }) {
  const opener = document.activeElement;
  const input = h("input", {
    type: "text",
    readonly: true,
    value: secret,
    class: "secret",
    id: uniqueId("secret"),
    spellcheck: "false",
  });
  const status = h("p", { class: "hint", role: "status" });
  const copy = h("button", { type: "button", class: "primary" }, "Copy");
  const done = h("button", { type: "button", class: "quiet" }, "Done");
  const heading = h("h2", { id: uniqueId("secret-title") }, title);
  const dialog = h(
    "dialog",
    { "aria-labelledby": heading.id },
    h(
      "div",
      { class: "dialog-form" },
      heading,
      h(
        "p",
        { class: "warning" },
        "Copy this secret now: it is shown only once and cannot be retrieved later.",
      ),
      h("label", { for: input.id }, "Secret"),
      h("div", { class: "secret-row" }, input, copy),
      status,
      note ? h("p", { class: "muted" }, note) : null,
      h("div", { class: "dialog-actions" }, done),
    ),
  );
  copy.addEventListener("click", async () => {
    try {
      await copyText(input);
      status.textContent = "Copied to the clipboard.";
    } catch (error) {
      status.textContent = `Could not copy (${error.message}): select the secret and copy it by hand.`;
    }
  });
  done.addEventListener("click", () => dialog.close());
  document.body.append(dialog);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      input.value = "";
      dialog.remove();
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
      resolve();
    });
    dialog.showModal();
    input.select();
  });
}
