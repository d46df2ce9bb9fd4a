"""The stand-in shapes its answers as real vLLM 0.32 did for the same requests: the answers
saved from a real vLLM CPU server under data/ (test_real_vllm_shapes.py compares both
servers live, and the saved answers with the live ones)."""

from __future__ import annotations

import pytest

from tests.fixtures.processes import ServerProcess
from tests.vllm_server.vllm_shapes import CASES, DATA, Case, capture, differences, saved, shape


def test_every_case_has_its_saved_answer_and_no_more() -> None:
    assert sorted(path.stem for path in DATA.glob("*.json")) == sorted(c.name for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_standin_answers_in_the_saved_shape(standin: ServerProcess, case: Case) -> None:
    expected = saved(case)
    assert expected["request"]["body"] == case.body, "the case changed: capture it again"
    mismatches = differences(shape(expected), shape(capture(standin.url, case.path, case.body)))
    assert not mismatches, "\n".join(mismatches)
