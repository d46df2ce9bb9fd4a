// A short-lived confirmation ("Key revoked.") in the shell's polite live region.
const SHOWN_MS = 5000;
let hideTimer = null;

export function toast(message) {
  const region = document.getElementById("toast");
  region.textContent = message;
  region.classList.add("shown");
  clearTimeout(hideTimer);
  hideTimer = setTimeout(() => {
    region.classList.remove("shown");
    region.textContent = "";
  }, SHOWN_MS);
}
