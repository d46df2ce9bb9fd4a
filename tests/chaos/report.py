"""The figures the chaos scenarios measure, kept for the whole session.

Each scenario records its figures before it asserts anything, so a failing scenario still
reports what it saw. Every record is printed at once (`pytest -s` shows it); when the
environment variable CHAOS_REPORT names a file, the session writes every scenario's figures
there as JSON at its end, and the same as markdown beside it (`<name>.md`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPORT_ENV_VAR = "CHAOS_REPORT"


class ChaosReport:
    def __init__(self) -> None:
        self.scenarios: dict[str, dict[str, Any]] = {}

    def record(self, scenario: str, **figures: Any) -> None:
        self.scenarios.setdefault(scenario, {}).update(figures)
        print(f"\n[chaos] {scenario}: {json.dumps(figures, sort_keys=True, default=str)}")

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.scenarios, indent=2, sort_keys=True, default=str) + "\n")
        path.with_suffix(".md").write_text(self.markdown())

    def markdown(self) -> str:
        lines = ["# Chaos suite: measured figures", ""]
        for scenario, figures in sorted(self.scenarios.items()):
            lines += [f"## {scenario}", "", "| figure | value |", "|---|---|"]
            for name, value in sorted(figures.items()):
                shown = value if isinstance(value, int | float | str) else json.dumps(value)
                lines.append(f"| {name} | `{shown}` |")
            lines.append("")
        return "\n".join(lines)
