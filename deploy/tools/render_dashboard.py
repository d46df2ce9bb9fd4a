"""Render the Grafana dashboard to a PNG from a real Prometheus, without Grafana.

Grafana is in neither Debian nor PyPI, so this evaluates each panel's own PromQL (from the
dashboard JSON, with Grafana's variables filled in as "All" would) against Prometheus' HTTP API
and draws the panels with matplotlib at their places in the dashboard's 24-column grid: time
series as lines with the panel's legend format, stats as the last value, state timelines as
lanes where a series has values. What it shows is what the queries return, nothing else.

    python -m deploy.tools.render_dashboard --prometheus http://127.0.0.1:9090 \
        --minutes 10 --out deploy/screenshots/dashboard.png
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

DASHBOARD = Path(__file__).resolve().parents[1] / "grafana" / "dashboards" / "vllm-gateway.json"
GRID_COLUMNS = 24
# Grafana's grid: about 75 px per column on a wide screen and 30 px per row unit.
COLUMN_INCHES = 0.85
ROW_INCHES = COLUMN_INCHES * 30 / 75
BACKGROUND, PANEL, BORDER = "#111217", "#181b1f", "#2c3235"
TEXT, MUTED = "#ccccdc", "#8e8e9e"
HEADER_INCHES = 0.6
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#ff9830"]
_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def expand(expr: str, rate_interval: str) -> str:
    """The query Grafana would send with every template variable at "All"."""
    return (
        expr.replace("$__rate_interval", rate_interval)
        .replace("${datasource}", "prometheus")
        .replace('"$tenant"', '".*"')
        .replace('"$model"', '".*"')
    )


def legend(format_: str, labels: dict[str, str]) -> str:
    if not format_:
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__")
    return _LEGEND_LABEL.sub(lambda match: labels.get(match.group(1), ""), format_)


@dataclass
class Prometheus:
    url: str

    def _get(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        response = httpx.get(self.url + path, params=params, timeout=30)
        response.raise_for_status()
        body = response.json()
        if body["status"] != "success":
            raise RuntimeError(f"{params['query']}: {body}")
        return body["data"]["result"]

    def range(self, query: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        params = {"query": query, "start": start, "end": end, "step": step}
        return self._get("/api/v1/query_range", params)

    def instant(self, query: str, at: float) -> list[dict[str, Any]]:
        return self._get("/api/v1/query", {"query": query, "time": at})


def format_value(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "percentunit":
        return f"{value * 100:.1f}%" if abs(value) >= 0.01 or value == 0 else f"{value * 100:.2g}%"
    suffix = " req/s" if unit == "reqps" else ""
    for limit, letter in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{letter}{suffix}"
    return f"{value:.3g}{suffix}"


@dataclass
class Cell:
    """A panel's place on the figure: its grid cell in inches from the top-left corner."""

    grid: dict[str, int]
    figure_size: tuple[float, float]

    @property
    def width(self) -> float:
        return self.grid["w"] * COLUMN_INCHES - 0.08

    @property
    def height(self) -> float:
        return self.grid["h"] * ROW_INCHES - 0.08

    def area(self, x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
        """A box in inches from the cell's top-left, as figure fractions from the bottom-left."""
        left = self.grid["x"] * COLUMN_INCHES + 0.04 + x
        top = HEADER_INCHES + self.grid["y"] * ROW_INCHES + y
        width, height = self.figure_size
        return (left / width, 1 - (top + h) / height, w / width, h / height)


@dataclass
class Renderer:
    prometheus: Prometheus
    start: float
    end: float
    step: float
    rate_interval: str

    def figure(self, dashboard: dict[str, Any]) -> Figure:
        panels = dashboard["panels"]
        rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
        size = (GRID_COLUMNS * COLUMN_INCHES, rows * ROW_INCHES + HEADER_INCHES)
        figure = plt.figure(figsize=size, facecolor=BACKGROUND)
        stamp = datetime.fromtimestamp(self.end, UTC).strftime("%Y-%m-%d %H:%M UTC")
        minutes = round((self.end - self.start) / 60)
        figure.text(
            0.005,
            1 - 0.3 / size[1],
            f"{dashboard['title']}: the last {minutes} min to {stamp}, every panel's query "
            f"evaluated by the Prometheus at {self.prometheus.url}",
            color=TEXT,
            fontsize=11,
            va="center",
        )
        for panel in panels:
            self.panel(figure, Cell(panel["gridPos"], size), panel)
        return figure

    def panel(self, figure: Figure, cell: Cell, panel: dict[str, Any]) -> None:
        is_row = panel["type"] == "row"
        frame = figure.add_axes(cell.area(0, 0, cell.width, cell.height))
        frame.set_xticks([])
        frame.set_yticks([])
        frame.set_facecolor(BACKGROUND if is_row else PANEL)
        for spine in frame.spines.values():
            spine.set_color(BACKGROUND if is_row else BORDER)
        title_y = 0.5 if is_row else 1 - 0.16 / cell.height
        frame.text(0.1 / cell.width, title_y, panel["title"], color=TEXT,
                   fontsize=13 if is_row else 9, weight="bold", va="center",
                   transform=frame.transAxes)  # fmt: skip
        if is_row:
            return
        # room for the title above, tick labels left and below (lane names, for timelines)
        left = 2.4 if panel["type"] == "state-timeline" else 0.75
        plot = figure.add_axes(cell.area(left, 0.38, cell.width - left - 0.15, cell.height - 0.7))
        plot.set_facecolor(PANEL)
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        draw = {"timeseries": self.timeseries, "stat": self.stat,
                "state-timeline": self.state_timeline}  # fmt: skip
        draw[panel["type"]](plot, panel, unit)

    def series(self, panel: dict[str, Any]) -> Iterator[tuple[str, list[datetime], list[float]]]:
        """Each target's series over the window: (legend, times, values)."""
        for target in panel["targets"]:
            query = expand(target["expr"], self.rate_interval)
            for series in self.prometheus.range(query, self.start, self.end, self.step):
                times = [datetime.fromtimestamp(float(t), UTC) for t, _ in series["values"]]
                values = [float(v) for _, v in series["values"]]
                yield legend(target.get("legendFormat", ""), series["metric"]), times, values

    def timeseries(self, axes: Axes, panel: dict[str, Any], unit: str) -> None:
        lines = 0
        for index, (name, times, values) in enumerate(self.series(panel)):
            axes.plot(times, values, linewidth=1.2, color=PALETTE[index % len(PALETTE)], label=name)
            lines += 1
        if lines == 0:
            no_data(axes)
            return
        time_axis(axes)
        axes.set_ylim(bottom=0)
        axes.yaxis.set_major_formatter(lambda value, _: format_value(value, unit))
        axes.legend(loc="upper left", fontsize=6, frameon=False, labelcolor=TEXT,
                    ncol=2 if lines > 3 else 1)  # fmt: skip

    def stat(self, axes: Axes, panel: dict[str, Any], unit: str) -> None:
        axes.set_axis_off()
        shown = []
        for target in panel["targets"]:
            query = expand(target["expr"], self.rate_interval)
            for series in self.prometheus.instant(query, self.end):
                value = format_value(float(series["value"][1]), unit)
                name = legend(target.get("legendFormat", ""), series["metric"])
                shown.append(f"{name}: {value}" if name else value)
        if not shown:
            no_data(axes)
            return
        size = 22 if len(shown) == 1 else 13
        axes.text(0.5, 0.5, "\n".join(shown), color=PALETTE[0], fontsize=size, weight="bold",
                  ha="center", va="center", transform=axes.transAxes)  # fmt: skip

    def state_timeline(self, axes: Axes, panel: dict[str, Any], unit: str) -> None:
        """One lane per series, filled where the series has a value (Grafana's state timeline)."""
        names = []
        for lane, (name, times, _) in enumerate(self.series(panel)):
            spans = [(mdates.date2num(t), self.step / 86400) for t in times]
            axes.broken_barh(spans, (lane + 0.1, 0.8), color=PALETTE[lane % len(PALETTE)])
            names.append(name)
        if not names:
            no_data(axes)
            return
        time_axis(axes)
        axes.set_yticks([lane + 0.5 for lane in range(len(names))], names, fontsize=7)
        axes.set_ylim(0, len(names))


def time_axis(axes: Axes) -> None:
    axes.tick_params(colors=MUTED, labelsize=7)
    axes.grid(color=BORDER, linewidth=0.5)
    for spine in axes.spines.values():
        spine.set_color(BORDER)
    locator = mdates.AutoDateLocator(tz=UTC, maxticks=7)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC, show_offset=False))


def no_data(axes: Axes) -> None:
    axes.set_axis_off()
    axes.text(0.5, 0.5, "No data", color=MUTED, ha="center", va="center",
              transform=axes.transAxes)  # fmt: skip


def render(
    prometheus_url: str,
    out: Path,
    minutes: float,
    rate_interval: str,
    dashboard_path: Path = DASHBOARD,
) -> None:
    dashboard = json.loads(dashboard_path.read_text())
    end = time.time()
    start = end - minutes * 60
    renderer = Renderer(Prometheus(prometheus_url), start, end, max(1.0, minutes * 60 / 300),
                        rate_interval)  # fmt: skip
    figure = renderer.figure(dashboard)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80, facecolor=BACKGROUND)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument(
        "--rate-interval", default="1m", help="what $__rate_interval stands for (4 scrapes+)"
    )
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    render(args.prometheus, args.out, args.minutes, args.rate_interval, args.dashboard)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
