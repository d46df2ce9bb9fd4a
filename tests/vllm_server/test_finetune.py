"""`vllm-server finetune` end to end: a real LoRA fine-tune of the tiny model, then served.

The fine-tune runs through the real CLI (gateway venv -> vLLM venv's python, peft on CPU). What
must hold: the loss on the trained answers drops, the adapter's greedy answer to a training
prompt moves to the trained answer, and the running vLLM loads the new adapter at runtime and
answers exactly as HF does with it (float32), so a fine-tune is served without a restart.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fixtures.processes import REPO_ROOT
from tests.fixtures.real_vllm import RealVllm
from vllm_server import tiny_model
from vllm_server.finetune import TrainingSummary, read_summary
from vllm_server.launcher import TINY_MODEL_DIR, default_venv, venv_python

EXAMPLE_DATA = REPO_ROOT / "vllm_server" / "examples" / "support_chat.jsonl"
# A random tiny model needs a high learning rate and every linear layer to learn in seconds.
TRAINING_FLAGS = ["--target-modules", "all-linear", "--lr", "1e-2", "--epochs", "10"]
TRAINING_FLAGS += ["--dropout", "0", "--seed", "0"]
SERVED_NAME = "support-finetuned"


@dataclass(frozen=True)
class Finetuned:
    adapter_dir: Path
    summary: TrainingSummary
    stdout: str


def finetune_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vllm_server.cli", "finetune", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory: pytest.TempPathFactory) -> Finetuned:
    try:
        python = venv_python(default_venv())
    except FileNotFoundError as error:
        raise pytest.fail.Exception(str(error), pytrace=False) from None
    tiny_model.build_with(python, TINY_MODEL_DIR)
    out = tmp_path_factory.mktemp("finetune") / SERVED_NAME
    base = str(tiny_model.base_dir(TINY_MODEL_DIR))
    # One torch thread: on a small shared box, torch's thread pool spinning against vLLM and
    # other tests makes this tiny model's many small matmuls far slower, not faster.
    result = finetune_cli(
        "--base", base, "--data", str(EXAMPLE_DATA), "--out", str(out), *TRAINING_FLAGS,
        env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return Finetuned(out, read_summary(out), result.stdout)


def word_overlap(expected: str, actual: str) -> float:
    """How much of `expected` `actual` reproduces, in order: 1.0 is the same words."""
    return difflib.SequenceMatcher(None, expected.split(), actual.split()).ratio()


def test_a_bad_dataset_line_is_refused_before_any_training(tmp_path: Path) -> None:
    data = tmp_path / "chat.jsonl"
    question = {"role": "user", "content": "hi"}
    good = {"messages": [question, {"role": "assistant", "content": "hello"}]}
    data.write_text(f"{json.dumps(good)}\n{json.dumps({'messages': [question]})}\n")
    # No vLLM venv at all: the dataset check must come first, in the gateway venv.
    result = finetune_cli(
        "--base", "unused", "--data", str(data), "--out", str(tmp_path / "adapter"),
        env={"VLLM_VENV": str(tmp_path / "no-venv")},
    )  # fmt: skip
    assert result.returncode == 2
    assert f"{data}:2: no assistant turn to learn from" in result.stderr
    assert not (tmp_path / "adapter").exists()


@pytest.mark.vllm
def test_saves_a_peft_lora_adapter(finetuned: Finetuned) -> None:
    config = json.loads((finetuned.adapter_dir / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA"
    assert config["r"] == 8
    assert (finetuned.adapter_dir / "adapter_model.safetensors").stat().st_size > 0


@pytest.mark.vllm
def test_training_loss_on_the_assistant_turns_drops(finetuned: Finetuned) -> None:
    summary = finetuned.summary
    print(f"loss {summary.loss_before:.4f} -> {summary.loss_after:.4f} in {summary.steps} steps")
    assert summary.examples == 10  # 9 conversations, one with two assistant turns
    assert summary.loss_after < summary.loss_before / 10
    assert f"loss before: {summary.loss_before:.4f}" in finetuned.stdout
    assert f"loss after:  {summary.loss_after:.4f}" in finetuned.stdout


@pytest.mark.vllm
def test_greedy_answer_to_a_training_prompt_moves_to_the_trained_answer(
    finetuned: Finetuned,
) -> None:
    assert finetuned.summary.samples
    for sample in finetuned.summary.samples:
        base = word_overlap(sample.trained_answer, sample.base.text)
        adapter = word_overlap(sample.trained_answer, sample.adapter.text)
        print(f"{sample.messages[-1]['content']!r}: word overlap {base:.2f} -> {adapter:.2f}")
        assert base < 0.2, sample.base.text
        assert adapter > 0.9, sample.adapter.text


@pytest.mark.vllm
async def test_running_vllm_loads_it_at_runtime_and_answers_as_hf_does(
    finetuned: Finetuned, real_vllm: RealVllm
) -> None:
    summary = finetuned.summary
    load = {"lora_name": SERVED_NAME, "lora_path": str(finetuned.adapter_dir)}
    async with httpx.AsyncClient(base_url=real_vllm.url, timeout=60) as client:

        async def chat(model: str, messages: list[dict[str, str]]) -> dict:
            response = await client.post(
                "/v1/chat/completions",
                json={
                    "model": model,
                    "messages": messages,
                    "max_tokens": summary.sample_max_tokens,
                    "temperature": 0,
                    "return_token_ids": True,
                },
            )
            assert response.status_code == 200, response.text
            return response.json()

        loaded = await client.post("/v1/load_lora_adapter", json=load)
        assert loaded.status_code == 200, loaded.text
        try:
            for sample in summary.samples:
                served = await chat(SERVED_NAME, sample.messages)
                assert served["prompt_token_ids"] == sample.prompt_token_ids
                assert served["choices"][0]["token_ids"] == sample.adapter.token_ids
                assert served["choices"][0]["message"]["content"] == sample.adapter.text
                base = await chat(real_vllm.served_model_name, sample.messages)
                assert base["choices"][0]["token_ids"] == sample.base.token_ids
        finally:
            unloaded = await client.post("/v1/unload_lora_adapter", json={"lora_name": SERVED_NAME})
        assert unloaded.status_code == 200, unloaded.text
