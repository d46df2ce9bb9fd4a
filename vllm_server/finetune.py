"""Fine-tune a LoRA adapter on a JSONL chat dataset, saved in the format vLLM serves.

Why: the fine-tune -> serve loop. The adapter this writes (peft's adapter_config.json +
adapter_model.safetensors) is loaded into a running vLLM with `POST /v1/load_lora_adapter`,
so a new fine-tune is served without restarting vLLM.

Dataset: one `{"messages": [{"role": ..., "content": ...}, ...]}` per line. Each assistant turn
is one example: its prompt is the model's chat template applied to the conversation before it
(with the generation prompt, as vLLM renders a chat request), its target is the turn's content
plus EOS, so the adapter learns where answers stop. Loss is on the target tokens only.

`vllm-server finetune` runs in the gateway venv, which has no torch: it checks the arguments and
the dataset, then runs this file with the vLLM venv's python (torch, transformers, peft), as
tiny_model.py does. For that reason torch and friends are imported inside functions. To run it
in that venv directly: `PYTHONPATH=. .venv-vllm/bin/python -m vllm_server.finetune --help`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vllm_server.launcher import REPO_ROOT, default_venv, venv_python
from vllm_server.tiny_model import GoldenCompletion

SUMMARY_NAME = "finetune_summary.json"
SAMPLE_COUNT = 3  # training prompts answered greedily by base and adapter after training
SAMPLE_MAX_TOKENS = 48
ALL_LINEAR = "all-linear"
IGNORED_LABEL = -100  # torch's cross_entropy default ignore_index

Message = dict[str, str]


@dataclass(frozen=True)
class TrainingConfig:
    base: str  # a model directory (or hub id)
    data: Path
    out: Path
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    epochs: int = 3
    lr: float = 2e-4
    batch_size: int = 4
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    max_steps: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rank", "alpha", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("--max-steps must be at least 1")
        if not self.target_modules:
            raise ValueError("--target-modules needs at least one module name")

    def to_argv(self) -> list[str]:
        """The flags that rebuild this config through `add_arguments`, for the child process."""
        argv = ["--base", self.base, "--data", str(self.data), "--out", str(self.out)]
        argv += ["--rank", str(self.rank), "--alpha", str(self.alpha)]
        argv += ["--dropout", str(self.dropout), "--epochs", str(self.epochs)]
        argv += ["--lr", str(self.lr), "--batch-size", str(self.batch_size)]
        argv += ["--target-modules", ",".join(self.target_modules), "--seed", str(self.seed)]
        if self.max_steps is not None:
            argv += ["--max-steps", str(self.max_steps)]
        return argv


@dataclass(frozen=True)
class Sample:
    """A training prompt answered greedily, before (base) and after (adapter) training."""

    messages: list[Message]  # the conversation up to the assistant turn
    trained_answer: str
    prompt_token_ids: list[int]
    base: GoldenCompletion
    adapter: GoldenCompletion


@dataclass(frozen=True)
class TrainingSummary:
    """What one fine-tune did; saved next to the adapter as finetune_summary.json."""

    base: str
    data: str
    device: str
    dtype: str
    rank: int
    alpha: int
    target_modules: list[str]
    examples: int  # assistant turns trained on
    steps: int
    seconds: float
    loss_before: float  # mean loss per target token, over the whole dataset
    loss_after: float
    sample_max_tokens: int
    samples: list[Sample]

    @classmethod
    def from_json(cls, text: str) -> TrainingSummary:
        data = json.loads(text)
        data["samples"] = [
            Sample(
                messages=sample["messages"],
                trained_answer=sample["trained_answer"],
                prompt_token_ids=sample["prompt_token_ids"],
                base=GoldenCompletion(**sample["base"]),
                adapter=GoldenCompletion(**sample["adapter"]),
            )
            for sample in data["samples"]
        ]
        return cls(**data)


def read_summary(adapter_dir: Path) -> TrainingSummary:
    return TrainingSummary.from_json((adapter_dir / SUMMARY_NAME).read_text())


def read_conversations(path: Path) -> list[list[Message]]:
    """The dataset's conversations; a ValueError names the first bad line and what is wrong."""
    conversations = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                conversations.append(_conversation(json.loads(line)))
            except (json.JSONDecodeError, ValueError) as error:
                raise ValueError(f"{path}:{number}: {error}") from None
    if not conversations:
        raise ValueError(f"{path}: no conversations")
    return conversations


def _conversation(record: Any) -> list[Message]:
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list):
        raise ValueError('expected {"messages": [{"role": ..., "content": ...}, ...]}')
    for message in messages:
        if not (
            isinstance(message, dict)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), str)
        ):
            raise ValueError(f"a message needs string 'role' and 'content': {message!r}")
    if not any(message["role"] == "assistant" for message in messages):
        raise ValueError("no assistant turn to learn from")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


@dataclass(frozen=True)
class _Example:
    messages: list[Message]
    answer: str
    prompt_ids: list[int]
    answer_ids: list[int]  # ends with EOS


def _examples(tokenizer: Any, conversations: Sequence[list[Message]]) -> list[_Example]:
    examples = []
    for messages in conversations:
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = tokenizer.apply_chat_template(
                messages[:index], tokenize=False, add_generation_prompt=True
            )
            # The template writes BOS itself; vLLM encodes a rendered chat the same way.
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            answer_ids = tokenizer(message["content"], add_special_tokens=False)["input_ids"]
            answer_ids = [*answer_ids, tokenizer.eos_token_id]
            examples.append(_Example(messages[:index], message["content"], prompt_ids, answer_ids))
    return examples


def _peft_target_modules(names: tuple[str, ...]) -> str | list[str]:
    """peft's "all-linear" shortcut (every linear layer but the output one) is a bare string."""
    return ALL_LINEAR if names == (ALL_LINEAR,) else list(names)


def _batch(examples: Sequence[_Example], pad_id: int, device: str) -> dict[str, Any]:
    """Right-padded input ids, attention mask and labels (prompt and padding ignored)."""
    import torch

    length = max(len(e.prompt_ids) + len(e.answer_ids) for e in examples)
    input_ids, attention, labels = [], [], []
    for example in examples:
        ids = example.prompt_ids + example.answer_ids
        padding = length - len(ids)
        input_ids.append(ids + [pad_id] * padding)
        attention.append([1] * len(ids) + [0] * padding)
        labels.append(
            [IGNORED_LABEL] * len(example.prompt_ids)
            + example.answer_ids
            + [IGNORED_LABEL] * padding
        )
    return {
        "input_ids": torch.tensor(input_ids, device=device),
        "attention_mask": torch.tensor(attention, device=device),
        "labels": torch.tensor(labels, device=device),
    }


def _target_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Summed cross-entropy over the target tokens, and how many there are."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    total = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        labels.reshape(-1),
        ignore_index=IGNORED_LABEL,
        reduction="sum",
    )
    return total, int((labels != IGNORED_LABEL).sum())


def _dataset_loss(model: Any, batches: Sequence[dict[str, Any]]) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            batch_total, batch_count = _target_loss(model, batch)
            total += float(batch_total)
            count += batch_count
    return total / count


def train(config: TrainingConfig) -> TrainingSummary:
    """Train, save the adapter and its summary into `config.out`, and return the summary."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    torch.manual_seed(config.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # bfloat16 halves a large base model's memory on GPU; peft keeps the adapter in float32.
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(config.base)
    if tokenizer.chat_template is None or tokenizer.eos_token_id is None:
        raise ValueError(f"{config.base}: the tokenizer needs a chat template and an EOS token")
    pad_id = tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id
    examples = _examples(tokenizer, read_conversations(config.data))
    base = AutoModelForCausalLM.from_pretrained(config.base, dtype=dtype).to(device)
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=_peft_target_modules(config.target_modules),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, lora)
    eval_batches = [
        _batch(examples[i : i + config.batch_size], pad_id, device)
        for i in range(0, len(examples), config.batch_size)
    ]
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        steps = min(steps, config.max_steps)
    print(
        f"fine-tuning {config.base} on {len(examples)} assistant turns from {config.data} "
        f"({device}, {str(dtype).removeprefix('torch.')}): rank {config.rank}, "
        f"alpha {config.alpha}, {','.join(config.target_modules)}, {steps} steps",
        flush=True,
    )
    # A fresh LoRA's B is zero, so this is the base model's loss.
    loss_before = _dataset_loss(model, eval_batches)
    print(f"loss before: {loss_before:.4f}", flush=True)
    _optimise(model, examples, config, steps, pad_id, device)
    loss_after = _dataset_loss(model, eval_batches)
    print(f"loss after:  {loss_after:.4f}", flush=True)
    model.save_pretrained(config.out)
    samples = _samples(model, tokenizer, examples[:SAMPLE_COUNT], pad_id, device)
    summary = TrainingSummary(
        base=config.base,
        data=str(config.data),
        device=device,
        dtype=str(dtype).removeprefix("torch."),
        rank=config.rank,
        alpha=config.alpha,
        target_modules=list(config.target_modules),
        examples=len(examples),
        steps=steps,
        seconds=round(time.monotonic() - started, 2),
        loss_before=loss_before,
        loss_after=loss_after,
        sample_max_tokens=SAMPLE_MAX_TOKENS,
        samples=samples,
    )
    (config.out / SUMMARY_NAME).write_text(json.dumps(dataclasses.asdict(summary), indent=1))
    return summary


def _optimise(
    model: Any,
    examples: Sequence[_Example],
    config: TrainingConfig,
    steps: int,
    pad_id: int,
    device: str,
) -> None:
    """AdamW on the LoRA weights, shuffled mini-batches, learning rate decaying linearly to 0."""
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
    order = random.Random(config.seed)
    report_every = max(1, steps // 10)
    model.train()
    step = 0
    while step < steps:
        shuffled = list(examples)
        order.shuffle(shuffled)
        for start in range(0, len(shuffled), config.batch_size):
            total, count = _target_loss(
                model, _batch(shuffled[start : start + config.batch_size], pad_id, device)
            )
            loss = total / count
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % report_every == 0 or step == steps:
                print(f"step {step}/{steps}  loss {float(loss.detach()):.4f}", flush=True)
            if step == steps:
                return


def _samples(
    model: Any, tokenizer: Any, examples: Sequence[_Example], pad_id: int, device: str
) -> list[Sample]:
    model.eval()
    samples = []
    for example in examples:
        with model.disable_adapter():
            base = _generate(model, tokenizer, example.prompt_ids, pad_id, device)
        adapter = _generate(model, tokenizer, example.prompt_ids, pad_id, device)
        samples.append(Sample(example.messages, example.answer, example.prompt_ids, base, adapter))
    return samples


def _generate(
    model: Any, tokenizer: Any, prompt_ids: list[int], pad_id: int, device: str
) -> GoldenCompletion:
    """Greedy answer to the prompt; like vLLM's `token_ids`, the ids keep a final EOS."""
    import torch

    inputs = torch.tensor([prompt_ids], device=device)
    with torch.no_grad():
        output = model.generate(
            input_ids=inputs,
            attention_mask=torch.ones_like(inputs),
            max_new_tokens=SAMPLE_MAX_TOKENS,
            do_sample=False,
            pad_token_id=pad_id,
        )
    token_ids = output[0, len(prompt_ids) :].tolist()
    return GoldenCompletion(token_ids, tokenizer.decode(token_ids, skip_special_tokens=True))


def report(summary: TrainingSummary, out: Path) -> str:
    """The closing lines a person reads: loss drop, a sample answer, how to serve the adapter."""
    lines = [
        f"loss on the assistant turns: {summary.loss_before:.4f} before -> "
        f"{summary.loss_after:.4f} after ({summary.steps} steps, {summary.seconds:.1f} s)"
    ]
    if summary.samples:
        sample = summary.samples[0]
        lines += [
            f"sample prompt:  {sample.messages[-1]['content']!r}",
            f"  trained:      {sample.trained_answer!r}",
            f"  base answers: {sample.base.text!r}",
            f"  adapter:      {sample.adapter.text!r}",
        ]
    load = json.dumps({"lora_name": out.name, "lora_path": str(out.resolve())})
    lines += [
        f"adapter saved to {out} (summary: {out / SUMMARY_NAME})",
        "serve it without restarting vLLM (VLLM_ALLOW_RUNTIME_LORA_UPDATING=True):",
        f"  curl -s $VLLM_URL/v1/load_lora_adapter -H 'Content-Type: application/json' -d '{load}'",
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainingConfig(base="", data=Path(), out=Path())
    parser.add_argument("--base", required=True, help="base model directory (or hub id)")
    parser.add_argument("--data", type=Path, required=True, help='JSONL of {"messages": [...]}')
    parser.add_argument("--out", type=Path, required=True, help="adapter directory to write")
    parser.add_argument(
        "--rank",
        type=int,
        default=defaults.rank,
        help="LoRA rank; vLLM's --max-lora-rank must be at least this (default: %(default)s)",
    )
    parser.add_argument(
        "--alpha", type=int, default=defaults.alpha, help="LoRA alpha (default: %(default)s)"
    )
    parser.add_argument(
        "--dropout",
        type=float,
        default=defaults.dropout,
        help="LoRA dropout (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=defaults.epochs,
        help="passes over the data (default: %(default)s)",
    )
    parser.add_argument(
        "--lr", type=float, default=defaults.lr, help="peak learning rate (default: %(default)s)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="assistant turns per step (default: %(default)s)",
    )
    parser.add_argument(
        "--target-modules",
        default=",".join(defaults.target_modules),
        help=f"comma-separated module names the adapter wraps, or {ALL_LINEAR} "
        "(default: %(default)s)",
    )
    parser.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="LoRA init and data order (default: %(default)s)",
    )
    parser.add_argument(
        "--venv", type=Path, help="venv with torch and peft (default: $VLLM_VENV or .venv-vllm)"
    )


def config_from_args(args: argparse.Namespace) -> TrainingConfig:
    # An absolute base path makes the adapter's recorded base model usable from any cwd.
    base = str(Path(args.base).resolve()) if Path(args.base).is_dir() else args.base
    return TrainingConfig(
        base=base,
        data=args.data,
        out=args.out,
        rank=args.rank,
        alpha=args.alpha,
        dropout=args.dropout,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        target_modules=tuple(name for name in args.target_modules.split(",") if name),
        max_steps=args.max_steps,
        seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    """Check the inputs here (no torch needed), then train in the vLLM venv's python."""
    try:
        config = config_from_args(args)
        read_conversations(config.data)
        python = venv_python(args.venv or default_venv())
    except (FileNotFoundError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    # The vLLM venv does not have this repo installed: it imports the package from the checkout.
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    command = [str(python), "-m", "vllm_server.finetune", *config.to_argv()]
    return subprocess.run(command, env={**os.environ, "PYTHONPATH": pythonpath}).returncode


def main(argv: Sequence[str] | None = None) -> int:
    """The child process: train with this (torch-capable) python."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        summary = train(config)
    except (OSError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    print(report(summary, config.out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
