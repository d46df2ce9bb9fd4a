"""The stand-in against a live real vLLM CPU server: the same requests get answers of the
same shape (vllm_shapes.py says what a shape keeps), and real vLLM still answers as it did
when its answers were saved under data/ (else: capture them again, as vllm_shapes.py says).
"""

from __future__ import annotations

import pytest

from tests.fixtures.processes import ServerProcess
from tests.fixtures.real_vllm import RealVllm
from tests.vllm_server.vllm_shapes import CASES, Case, capture, differences, saved, shape

pytestmark = pytest.mark.vllm


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_standin_shapes_answers_as_real_vllm_does(
    real_vllm: RealVllm, standin: ServerProcess, case: Case
) -> None:
    real = shape(capture(real_vllm.url, case.path, case.body))
    stale = differences(shape(saved(case)), real)
    assert not stale, "real vLLM answers otherwise than saved:\n" + "\n".join(stale)
    mismatches = differences(real, shape(capture(standin.url, case.path, case.body)))
    assert not mismatches, "\n".join(mismatches)
