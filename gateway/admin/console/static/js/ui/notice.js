// An error region per page or dialog: the API's own message, announced by screen readers.
import { h } from "../dom.js";

export function notice() {
  const element = h("p", { class: "alert", role: "alert" });
  return {
    element,
    show(error) {
      element.textContent =
        typeof error === "string" ? error : (error.describe?.() ?? error.message);
    },
    clear() {
      element.textContent = "";
    },
  };
}
