"""A tiny Llama with three LoRA adapters, built offline, plus its HF golden greedy outputs.

Why: tests and the laptop demo need a real vLLM serving a real model with real adapters on
a 2-core CPU and without the Hugging Face hub. Random weights are enough: with float32, vLLM's
greedy token ids equal HF transformers/peft `generate` exactly, so tests can check vLLM (and
the gateway in front of it) against outputs computed here.

Runs with the vLLM venv's python (it needs torch, transformers, tokenizers and peft):
    python vllm_server/tiny_model.py OUT_DIR
    python vllm_server/tiny_model.py OUT_DIR --golden --prompt "def main():" --max-tokens 16
The gateway venv has no torch; it calls this file through `build_with`/`golden_with`, which
run it in a child process. For that reason, torch and friends are imported inside functions.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import subprocess
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ADAPTER_SEEDS = {"tenant-a": 1, "tenant-b": 2, "tenant-c": 3}
BASE_SEED = 0
VOCAB_SIZE = 4096
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]  # ids 0..3, in this order
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# Bump when anything above or in the build changes: an older cache is then rebuilt.
BUILD_ID = "tiny-llama-v1"
MARKER_NAME = ".complete"
TOKENIZER_CORPUS_CHARS = 2_000_000


@dataclass(frozen=True)
class GoldenCompletion:
    """One greedy completion: the generated token ids and their decoded text."""

    token_ids: list[int]
    text: str


def base_dir(out_dir: Path) -> Path:
    return out_dir / "base"


def adapter_dirs(out_dir: Path) -> dict[str, Path]:
    return {name: out_dir / "adapters" / name for name in ADAPTER_SEEDS}


def is_built(out_dir: Path) -> bool:
    marker = out_dir / MARKER_NAME
    return marker.is_file() and marker.read_text().strip() == BUILD_ID


@contextmanager
def _build_lock(out_dir: Path) -> Iterator[None]:
    """Serialise builds, so a demo and a test session never write the same files at once."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with (out_dir.parent / f".{out_dir.name}.lock").open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


def build(out_dir: Path) -> None:
    """Build tokenizer, base model and adapters into `out_dir`, unless already complete."""
    with _build_lock(out_dir):
        if is_built(out_dir):
            return
        (out_dir / MARKER_NAME).unlink(missing_ok=True)
        tokenizer = _train_tokenizer()
        tokenizer.save_pretrained(base_dir(out_dir))
        _build_base_model(tokenizer).save_pretrained(base_dir(out_dir), safe_serialization=True)
        for name, path in adapter_dirs(out_dir).items():
            _build_adapter(base_dir(out_dir), ADAPTER_SEEDS[name]).save_pretrained(path)
        (out_dir / MARKER_NAME).write_text(BUILD_ID + "\n")


def _tokenizer_corpus() -> Iterator[str]:
    """Python's own stdlib sources: local, plentiful, and the same on every machine kind."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    remaining = TOKENIZER_CORPUS_CHARS
    for path in sorted(stdlib.glob("*.py")):
        if remaining <= 0:
            return
        text = path.read_text(encoding="utf-8", errors="replace")[:remaining]
        remaining -= len(text)
        yield text


def _train_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    # Prompts start with <s>, as Llama tokenizers do; vLLM and HF both go through this.
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=512,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def _build_base_model(tokenizer: Any) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(BASE_SEED)
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,  # head_dim 64: a head size the CPU attention supports
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.2,  # peaked logits keep greedy decoding stable
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    return LlamaForCausalLM(config).eval()


def _build_adapter(base_path: Path, seed: int) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj"],
        lora_dropout=0.0,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(LlamaForCausalLM.from_pretrained(base_path), config)
    # Large B weights make each adapter change the greedy output visibly.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(mean=0.0, std=0.5)
    return model


def golden(
    out_dir: Path, prompts: Sequence[str], max_tokens: int
) -> dict[str, list[GoldenCompletion]]:
    """Greedy completions per model name ("base" and each adapter), one per prompt."""
    from peft import PeftModel
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(base_dir(out_dir))
    models: dict[str, Any] = {"base": LlamaForCausalLM.from_pretrained(base_dir(out_dir))}
    for name, path in adapter_dirs(out_dir).items():
        base = LlamaForCausalLM.from_pretrained(base_dir(out_dir))
        models[name] = PeftModel.from_pretrained(base, path)
    return {
        name: [_greedy(model, tokenizer, prompt, max_tokens) for prompt in prompts]
        for name, model in models.items()
    }


def _greedy(model: Any, tokenizer: Any, prompt: str, max_tokens: int) -> GoldenCompletion:
    import torch

    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        output = model.eval().generate(
            **inputs,
            max_new_tokens=max_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    # Like vLLM's `token_ids`, these keep a final </s>; the text leaves it out.
    token_ids = output[0, inputs["input_ids"].shape[1] :].tolist()
    return GoldenCompletion(token_ids, tokenizer.decode(token_ids, skip_special_tokens=True))


def build_with(python: Path, out_dir: Path) -> None:
    """Build `out_dir` by running this file with `python` (a venv that has torch)."""
    if is_built(out_dir):
        return
    subprocess.run([str(python), __file__, str(out_dir)], check=True)


def golden_with(
    python: Path, out_dir: Path, prompts: Sequence[str], max_tokens: int
) -> dict[str, list[GoldenCompletion]]:
    """`golden`, computed by running this file with `python` (a venv that has torch)."""
    argv = [str(python), __file__, str(out_dir), "--golden", "--max-tokens", str(max_tokens)]
    for prompt in prompts:
        argv += ["--prompt", prompt]
    result = subprocess.run(argv, check=True, capture_output=True, text=True)
    return {
        name: [GoldenCompletion(**completion) for completion in completions]
        for name, completions in json.loads(result.stdout).items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--golden", action="store_true", help="print golden completions JSON")
    parser.add_argument("--prompt", action="append", default=[], help="repeatable")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args(argv)
    build(args.out_dir)
    if args.golden:
        outputs = golden(args.out_dir, args.prompt, args.max_tokens)
        json.dump(
            {name: [vars(c) for c in completions] for name, completions in outputs.items()},
            sys.stdout,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
