// Stacked bar charts in SVG, one bar per day, one colour per series (CSS classes series-0..7).
// Each segment has a <title> (hover text, read by screen readers); the page shows the same
// numbers in a table beside it.
import { h, svg } from "./dom.js";
import { formatCount } from "./format.js";

const WIDTH = 640;
const HEIGHT = 220;
const MARGIN = { top: 12, right: 12, bottom: 28, left: 56 };
const PALETTE_SIZE = 8;
const MAX_X_LABELS = 10;

// A round axis maximum and step (1, 2 or 5 times a power of ten) above `max`.
function niceScale(max) {
  if (max <= 0) return { top: 1, step: 1 };
  const rough = max / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((candidate) => candidate >= rough);
  return { top: Math.ceil(max / step) * step, step };
}

export function seriesClass(index) {
  return `series-${index % PALETTE_SIZE}`;
}

// `days`: ["2025-01-01", ...]; `series`: [{ name, values: [number per day] }].
export function stackedBarChart({ title, unit, days, series }) {
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const totals = days.map((_, day) => series.reduce((sum, one) => sum + one.values[day], 0));
  const { top, step } = niceScale(Math.max(0, ...totals));
  const y = (value) => MARGIN.top + plotHeight - (value / top) * plotHeight;
  const slot = plotWidth / Math.max(days.length, 1);
  const barWidth = Math.max(2, Math.min(48, slot * 0.7));
  const labelEvery = Math.ceil(days.length / MAX_X_LABELS);

  const grid = [];
  for (let value = 0; value <= top; value += step) {
    grid.push(
      svg("line", {
        class: "gridline",
        x1: MARGIN.left,
        x2: WIDTH - MARGIN.right,
        y1: y(value),
        y2: y(value),
      }),
      svg(
        "text",
        { class: "axis", x: MARGIN.left - 6, y: y(value) + 4, "text-anchor": "end" },
        formatCount(value),
      ),
    );
  }
  const bars = days.map((day, index) => {
    const x = MARGIN.left + slot * index + (slot - barWidth) / 2;
    let base = 0;
    const segments = series.map((one, seriesIndex) => {
      const value = one.values[index];
      const segment = svg(
        "rect",
        {
          class: `bar ${seriesClass(seriesIndex)}`,
          x,
          width: barWidth,
          y: y(base + value),
          height: y(base) - y(base + value),
        },
        svg("title", {}, `${day} · ${one.name}: ${formatCount(value)} ${unit}`),
      );
      base += value;
      return value > 0 ? segment : null;
    });
    // counted from the right, so the latest day always has its label
    const label =
      (days.length - 1 - index) % labelEvery === 0
        ? svg(
            "text",
            { class: "axis", x: x + barWidth / 2, y: HEIGHT - 8, "text-anchor": "middle" },
            day.slice(5),
          )
        : null;
    return svg("g", {}, segments, label);
  });

  return h(
    "figure",
    { class: "chart" },
    h("figcaption", {}, title),
    svg(
      "svg",
      { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": `${title}, by day` },
      grid,
      svg("line", {
        class: "baseline",
        x1: MARGIN.left,
        x2: WIDTH - MARGIN.right,
        y1: y(0),
        y2: y(0),
      }),
      bars,
    ),
  );
}

export function legend(names) {
  return h(
    "ul",
    { class: "legend", "aria-label": "Series" },
    names.map((name, index) =>
      h(
        "li",
        {},
        h("span", { class: `swatch ${seriesClass(index)}`, "aria-hidden": "true" }),
        name,
      ),
    ),
  );
}
