"""The GPU memory each GRPO recipe needs, computed (not measured) from its family's published shapes:
`python -m bench.train_memory` prints the table docs/training.md shows and each recipe states.

The arithmetic, per GPU, for one micro-step of the recipe (R1-AQA's: 1 prompt x 8 generations of up to 256 tokens
on a 10 s clip; its prompt is the clip's audio tokens plus at most 100 of text):

- weights: every parameter of the model that answers (`aqa models`' counts), in bf16, or the language model's linear
  layers in NF4 (QLoRA). Under ZeRO-3, TRL gathers the whole model on every GPU to generate (ds3_gather_for_generation),
  so each GPU holds all of it in bf16 then, whatever the sharding does between generations.
- trainable state (LoRA): every adapter parameter (counted on the meta device by building the recipe's LoRA model) in
  fp32, its gradient and Adam's two moments: 16 bytes each. ZeRO-3 with CPU offload keeps the full fine-tune's fp32
  master weights, gradients and Adam moments in host memory (18 bytes per trained parameter with the bf16 copy),
  and the reference model's bf16 weights (2 bytes per parameter).
- training activations: with activation checkpointing, each decoder layer's input for every token (rows x tokens x
  hidden x 2 bytes x layers), one layer recomputed at a time (its projections' and MLP's outputs; for a mixture of
  experts, each token's experts), the audio encoder's layer inputs over a 30 s window (1500 positions: what
  Qwen2-Audio and Audio Flamingo 3 compute for any clip; the Omni encoders compute only the clip's), and TRL's
  log-probability tile (4096 tokens x 32768 vocabulary entries in fp32).
- generation: the KV cache of every row at the full length (rows x tokens x layers x 2 x KV heads x head width x 2
  bytes).
- transient: the largest weight materialized at once, in forward and backward: an NF4 layer dequantized to bf16, or
  a fused expert weight PEFT adapts (target_parameters) as bf16 weight plus fp32 delta.

Generation and the training passes do not overlap, so the peak is weights + trainable state + transient + the larger
of the two phases. Measured once on a GPU for comparison: Qwen2-Audio's one-GPU QLoRA recipe peaked at 11.4 GiB
(docs/benchmarks.md), where this arithmetic gives the figure in the table's first row.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from peft import get_peft_model
from torch import nn

from aqa.families import FAMILIES, Family, family_parameters
from train.common import get_lora_config, lora_target_parameters, under
from train.config import parse_config
from train.grpo import CONFIG_CLASSES

GIB = 2**30
ROOT = Path(__file__).resolve().parent.parent
CLIP_SECONDS = 10.0  # AVQA's clips (VGGSound)
PROMPT_TEXT_TOKENS = 100  # the system turn, R1-AQA's question prompt with its options, the template's markers
ENCODER_POSITIONS = 1500  # a 30 s window after the encoder's stride-2 convolution
LOGPROB_TILE = 4096 * 32768 * 4  # TRL 1.16's fused log-probability head: tokens x vocabulary entries x fp32
# The recipes whose memory is stated (the one-GPU ones, and R1-AQA's full fine-tune on 8 GPUs under ZeRO-3), with
# the overrides of a variant the docs name
RECIPES = (
    ("train/recipes/grpo_qlora_24gb.yaml",),
    ("train/recipes/grpo_paper.yaml",),
    ("train/recipes/qwen2.5-omni/grpo_qlora.yaml",),
    ("train/recipes/qwen2.5-omni/grpo_full.yaml",),
    ("train/recipes/qwen3-omni/grpo_lora.yaml",),
    ("train/recipes/qwen3-omni/grpo_lora.yaml", "--lora_target_parameters", "none"),
    ("train/recipes/qwen3-omni/grpo_full.yaml",),
    ("train/recipes/audio-flamingo-3/grpo_qlora.yaml",),
    ("train/recipes/audio-flamingo-3/grpo_full.yaml",),
)


@dataclass(frozen=True)
class Estimate:
    """A recipe's memory, in GiB per GPU (host: per node, all processes together)."""

    recipe: str  # the recipe and its overrides, as a command line would give them
    family: str
    method: str  # "QLoRA", "LoRA" (bf16) or "full, ZeRO-3"
    weights: float
    trainable_state: float
    training_activations: float
    generation_kv_cache: float
    transient: float
    peak: float
    host_memory: float  # what ZeRO-3's CPU offload keeps in host memory; 0 for the one-GPU recipes


def recipe_family(model_name: str) -> Family:
    """The family whose published checkpoints include the recipe's model."""
    for family in FAMILIES.values():
        if any(published.hub_id == model_name for published in family.published):
            return family
    raise ValueError(f"{model_name} is none of the published checkpoints (`aqa models`)")


def estimate(recipe: str, *overrides: str) -> Estimate:
    arguments = ["--config", str(ROOT / recipe), "--use_cpu", "true", *overrides]
    _, training, model_args = parse_config(CONFIG_CLASSES, arguments)
    family = recipe_family(model_args.model_name_or_path)
    config = family.build_config(family.build_tokenizer(), "full")
    text = family.answering_config(config).get_text_config()
    counts = family_parameters(family, config)
    with torch.device("meta"):
        model = family.model_class()._from_config(family.answering_config(config), dtype=torch.bfloat16)

    rows, completion = training.per_device_train_batch_size, training.max_completion_length
    tokens = rows * (round(CLIP_SECONDS * family.audio_tokens_per_second) + PROMPT_TEXT_TOKENS + completion)
    hidden, layers = text.hidden_size, text.num_hidden_layers
    head = getattr(text, "head_dim", None) or hidden // text.num_attention_heads
    attention = (text.num_attention_heads + 2 * text.num_key_value_heads) * head + hidden
    experts = getattr(text, "num_experts_per_tok", 0) * getattr(text, "moe_intermediate_size", 0)
    mlp = 3 * (experts or text.intermediate_size)
    encoder = model.model.audio_tower
    encoder_width = next(p for n, p in encoder.named_parameters() if n.endswith("layers.0.fc1.weight")).shape[1]
    encoder_layers = len(encoder.layers)

    checkpoints = tokens * hidden * 2 * layers
    recompute = tokens * (attention + mlp) * 2
    encoder_inputs = rows * ENCODER_POSITIONS * encoder_width * 2 * encoder_layers
    activations = checkpoints + recompute + encoder_inputs + LOGPROB_TILE
    kv_cache = tokens * layers * 2 * text.num_key_value_heads * head * 2

    if model_args.use_peft:
        quantized = model_args.load_in_4bit
        weights = counts.weight_bytes("4bit" if quantized else "bf16")
        adapted = tuple(lora_target_parameters(model_args, family))
        fused = max((p.numel() for n, p in model.named_parameters() if n.endswith(adapted)), default=0)
        linear = max(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
        lora = get_peft_model(model, get_lora_config(model_args, model))
        adapters = sum(p.numel() for p in lora.parameters() if p.requires_grad)
        trainable, host = 16 * adapters, 0.0
        # a layer dequantized to bf16 while it computes; a fused expert weight adapted: the bf16 weight plus the fp32
        # delta, in forward and in backward
        transient = 2 * linear if quantized else 2 * (2 + 4) * fused
        method = "QLoRA" if quantized else "LoRA"
        peak = weights + trainable + transient + max(activations, kv_cache)
    else:
        weights = counts.weight_bytes("bf16")  # gathered on every GPU to generate
        trained = sum(p.numel() for n, p in model.named_parameters() if not under(n, family.unused_by_audio))
        trainable, transient = 0.0, 0.0
        host = 18 * trained + 2 * counts.total  # and the reference model's bf16 weights, offloaded as well
        method = "full, ZeRO-3"
        # Between generations ZeRO-3 keeps at most ~1e9 parameters live on a GPU (2 GiB in bf16), far below the
        # gathered model, so generation is the peak.
        peak = max(weights + kv_cache, 2 * 1e9 + activations)
    return Estimate(
        recipe=" ".join([recipe.removeprefix("train/recipes/"), *overrides]),
        family=family.name,
        method=method,
        weights=round(weights / GIB, 1),
        trainable_state=round(trainable / GIB, 1),
        training_activations=round(activations / GIB, 1),
        generation_kv_cache=round(kv_cache / GIB, 1),
        transient=round(transient / GIB, 1),
        peak=round(peak / GIB, 1),
        host_memory=round(host / GIB),
    )


def markdown(estimates: list[Estimate]) -> str:
    columns = ["recipe", "family", "method", "weights", "trainable state", "training activations", "generation KV"]
    columns += ["transient", "peak per GPU", "host memory (ZeRO-3 offload)"]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for e in estimates:
        host = f"{e.host_memory} GiB" if e.host_memory else "—"
        lines.append(
            f"| `{e.recipe}` | {e.family} | {e.method} | {e.weights} | "
            f"{e.trainable_state} | {e.training_activations} | {e.generation_kv_cache} | {e.transient} | "
            f"**{e.peak} GiB** | {host} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the estimates as JSON")
    args = parser.parse_args()
    estimates = [estimate(*recipe) for recipe in RECIPES]
    print(json.dumps([asdict(e) for e in estimates], indent=2) if args.json else markdown(estimates))


if __name__ == "__main__":
    main()
