// How numbers, times and limits read on screen.
const counts = new Intl.NumberFormat(undefined);
const LIMIT_LABELS = {
  requests_per_minute: "req/min",
  tokens_per_minute: "tok/min",
  max_concurrent: "concurrent",
  tokens_per_day: "tok/day",
  tokens_per_month: "tok/month",
};

export const LIMIT_NAMES = Object.keys(LIMIT_LABELS);

export function formatCount(value) {
  return counts.format(value);
}

function pad(number) {
  return String(number).padStart(2, "0");
}

// Local time, sortable and unambiguous: 2025-01-31 14:05.
export function formatTime(unixSeconds) {
  if (unixSeconds === null || unixSeconds === undefined) return "—";
  const at = new Date(unixSeconds * 1000);
  const day = `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}`;
  return `${day} ${pad(at.getHours())}:${pad(at.getMinutes())}`;
}

export function formatLimits(limits) {
  const set = LIMIT_NAMES.filter((name) => limits[name] !== null && limits[name] !== undefined);
  if (set.length === 0) return "none";
  return set.map((name) => `${formatCount(limits[name])} ${LIMIT_LABELS[name]}`).join(", ");
}

export function formatRoute(route) {
  return route.adapter ? `${route.base_model} + ${route.adapter}` : route.base_model;
}

export function formatDuration(seconds) {
  if (seconds < 120) return `${formatCount(seconds)} s`;
  if (seconds < 7200) return `${formatCount(Math.round(seconds / 60))} min`;
  if (seconds < 172800) return `${formatCount(Math.round(seconds / 3600))} h`;
  return `${formatCount(Math.round(seconds / 86400))} days`;
}

// <input type="datetime-local"> value <-> unix seconds, in the browser's time zone.
export function toLocalInput(unixSeconds) {
  if (unixSeconds === null || unixSeconds === undefined) return "";
  const at = new Date(unixSeconds * 1000);
  const day = `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}`;
  return `${day}T${pad(at.getHours())}:${pad(at.getMinutes())}`;
}

export function fromLocalInput(value) {
  return value ? new Date(value).getTime() / 1000 : null;
}

// YYYY-MM-DD of a Date in UTC: the usage ledger counts per UTC day.
export function utcDay(date) {
  return date.toISOString().slice(0, 10);
}
