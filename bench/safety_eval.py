"""Detection and false-positive rates of the safety detectors on the project's labelled corpus.

Run `python -m bench.safety_eval`: it prints a table and writes bench/results/safety_eval.md.
Detection rate: the share of the samples labelled with a detector that it flags. False
positives: the share of the benign samples it flags. Every detector runs on every text as the
input stage runs it (one text at a time, the whole text at once). The deny_terms row uses
`DENY_TERMS` from the corpus builder, an example operator list; the corpus (bench/safety_corpus)
is rebuilt by `python -m bench.safety_corpus.build`.
"""

from __future__ import annotations

import datetime
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.safety_corpus.build import DENY_TERMS, Sample, load
from gateway.safety import deny
from gateway.safety.detector import Detector
from gateway.safety.policy import PII_DETECTORS, DetectorName
from gateway.safety.registry import BUILT_IN

RESULTS = Path(__file__).parent / "results" / "safety_eval.md"
TARGET_PII_FPR = 0.01
EXAMPLES_SHOWN = 3


@dataclass(frozen=True)
class Row:
    detector: str
    positives: int
    detected: int
    benign: int
    false_positives: int
    missed_examples: list[str]
    false_positive_examples: list[str]

    @property
    def detection_rate(self) -> float:
        return self.detected / self.positives if self.positives else float("nan")

    @property
    def false_positive_rate(self) -> float:
        return self.false_positives / self.benign if self.benign else float("nan")


def flags(detector: Detector, text: str) -> bool:
    return next(iter(detector.find(text)), None) is not None


def evaluate(name: str, detector: Detector, corpus: dict[str, list[Sample]]) -> Row:
    labelled = [s["text"] for samples in corpus.values() for s in samples if s["label"] == name]
    benign = [sample["text"] for sample in corpus["benign"]]
    missed = [text for text in labelled if not flags(detector, text)]
    false_positives = [text for text in benign if flags(detector, text)]
    return Row(
        detector=name,
        positives=len(labelled),
        detected=len(labelled) - len(missed),
        benign=len(benign),
        false_positives=len(false_positives),
        missed_examples=missed[:EXAMPLES_SHOWN],
        false_positive_examples=false_positives[:EXAMPLES_SHOWN],
    )


def evaluate_all(corpus: dict[str, list[Sample]]) -> list[Row]:
    detectors: dict[str, Detector] = {name.value: d for name, d in BUILT_IN.items()}
    detectors[DetectorName.DENY_TERMS.value] = deny.deny_terms(DENY_TERMS)
    return [evaluate(name, detector, corpus) for name, detector in detectors.items()]


def any_pii_false_positives(corpus: dict[str, list[Sample]]) -> tuple[int, int]:
    """Benign samples that at least one built-in PII detector flags, of all benign samples."""
    pii = [BUILT_IN[name] for name in PII_DETECTORS]
    benign = [sample["text"] for sample in corpus["benign"]]
    return sum(any(flags(d, text) for d in pii) for text in benign), len(benign)


def markdown(rows: list[Row], any_pii: tuple[int, int], corpus: dict[str, list[Sample]]) -> str:
    sizes = ", ".join(f"{name}: {len(samples)}" for name, samples in corpus.items())
    lines = [
        "# Safety detectors on the labelled corpus",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        "- Command: `python -m bench.safety_eval` (corpus: `python -m bench.safety_corpus.build`)",
        f"- Version: {version_line()}",
        f"- Corpus (bench/safety_corpus, samples): {sizes}",
        "",
        "| detector | labelled samples | detection rate | benign samples | false positives | FPR |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.detector} | {row.positives} | {row.detection_rate:.1%} | {row.benign} | "
            f"{row.false_positives} | {row.false_positive_rate:.2%} |"
        )
    flagged, benign = any_pii
    lines += [
        f"| any built-in PII detector | - | - | {benign} | {flagged} | {flagged / benign:.2%} |",
        "",
        f"Target: FPR <= {TARGET_PII_FPR:.0%} on benign text for each built-in PII detector: "
        + ("PASS" if _pii_target_met(rows) else "FAIL"),
        "",
        "## Misses and false positives (first few)",
        "",
    ]
    for row in rows:
        for kind, examples in (
            ("missed", row.missed_examples),
            ("false positive", row.false_positive_examples),
        ):
            lines += [f"- {row.detector}, {kind}: `{_one_line(text)}`" for text in examples]
    return "\n".join(lines) + "\n"


def _pii_target_met(rows: list[Row]) -> bool:
    pii = {name.value for name in PII_DETECTORS}
    return all(row.false_positive_rate <= TARGET_PII_FPR for row in rows if row.detector in pii)


def _one_line(text: str) -> str:
    return text.replace("\n", " ")[:120].replace("`", "'")


def version_line() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True)
        return f"git {commit}" + (" + local changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    corpus = load()
    rows = evaluate_all(corpus)
    report = markdown(rows, any_pii_false_positives(corpus), corpus)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)
    print(report)
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
