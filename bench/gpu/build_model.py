"""A random-weight Llama of realistic shape with its tokenizer and LoRA adapters, built offline.

Why: the GPU machine reaches no model hub, and serving speed does not depend on what the
weights say, only on the model's shape. The default shape is the one in
../shared/notes/gpu-vllm.md (hidden 2048, 16 layers, 16 heads / 8 KV heads, intermediate
5632, vocab 32000: 886M parameters, saved as bf16); `--tiny` keeps the vocabulary and shrinks
the rest, so this script and the benchmark around it can be tried on a CPU in seconds.

The tokenizer is vllm_server/tiny_model.py's (byte-level BPE trained on Python's stdlib, with
its chat template), padded with plain added tokens up to the model's vocabulary: every token
id the model can sample then decodes to non-empty text, so each generated token is one SSE
chunk with content, as with a real model.

Runs, from the repository root, with a python that has torch, transformers, tokenizers and
peft (python3 on the GPU machine; .venv-vllm/bin/python here):
    python -m bench.gpu.build_model OUT_DIR [--adapters 4] [--tiny]
It writes OUT_DIR/base (weights and tokenizer) and OUT_DIR/tenant-a, tenant-b, ... (adapters).
"""

from __future__ import annotations

import argparse
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vllm_server import tiny_model

LORA_RANK = 16
LORA_B_STD = 0.02
MAX_POSITIONS = 4096


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int


GPU_SHAPE = Shape(hidden=2048, layers=16, heads=16, kv_heads=8, intermediate=5632, vocab=32000)
TINY_SHAPE = Shape(hidden=256, layers=2, heads=4, kv_heads=2, intermediate=512, vocab=32000)


def adapter_names(count: int) -> list[str]:
    return [f"tenant-{letter}" for letter in string.ascii_lowercase[:count]]


def build(out_dir: Path, shape: Shape, adapters: int) -> None:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = _tokenizer(shape.vocab)
    base_dir = out_dir / "base"
    tokenizer.save_pretrained(base_dir)
    torch.manual_seed(tiny_model.BASE_SEED)
    with torch.device(device):
        model = _base_model(shape, tokenizer).to(torch.bfloat16)
    model.save_pretrained(base_dir, safe_serialization=True)
    for seed, name in enumerate(adapter_names(adapters), start=1):
        with_adapter = _adapter(model, seed)
        with_adapter.save_pretrained(out_dir / name)
        model = with_adapter.unload()


def _tokenizer(vocab: int) -> Any:
    tokenizer = tiny_model._train_tokenizer()
    tokenizer.add_tokens([f"<w{index}>" for index in range(vocab - len(tokenizer))])
    tokenizer.model_max_length = MAX_POSITIONS
    return tokenizer


def _base_model(shape: Shape, tokenizer: Any) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


def _adapter(model: Any, seed: int) -> Any:
    """Wrap `model` in a LoRA adapter whose B matrices are drawn with `seed`, so each adapter
    changes the output differently; the caller unloads it before the next one."""
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=LORA_RANK,
        lora_alpha=2 * LORA_RANK,
        target_modules=["q_proj", "v_proj"],
        lora_dropout=0.0,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(mean=0.0, std=LORA_B_STD)
    return peft_model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--adapters", type=int, default=4, help="LoRA adapters (default 4)")
    parser.add_argument("--tiny", action="store_true", help="a shape that builds in seconds")
    args = parser.parse_args(argv)
    build(args.out_dir, TINY_SHAPE if args.tiny else GPU_SHAPE, args.adapters)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
