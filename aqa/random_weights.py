"""Random-weight models of every family, built offline in seconds: the tiny checkpoints and the full-size
architectures.

Nothing can be downloaded in CI, so every test runs on tiny checkpoints (`aqa tiny DIR --family ...`). Each has its
family's real architecture, its real processor classes and its published chat template, only small: a byte-level
tokenizer (no merges) with the real special tokens, a 2-layer audio encoder and a 2-layer language model. The full
size (`aqa bench --random-weights full --family ...`) has the published shapes, so that speed and memory can be
measured without the weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from aqa.errors import ModelError
from aqa.families import QWEN2_AUDIO, Family
from aqa.model import DTYPES, AQAModel, check_quantizable, choose_decoder, place_embeddings

SIZES = ("tiny", "full")


def build_random_model(
    size: str = "tiny",
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    embeddings_on_cpu: bool | None = None,
    seed: int = 0,
    compile: bool | None = None,
    family: Family = QWEN2_AUDIO,
) -> AQAModel:
    """The tiny or full-size architecture of `family` with random weights, allocated on `device` in its dtype.

    The full size is built directly on the GPU in bf16, never as fp32 on the CPU first. For 4-bit the bf16
    language-model layers are then replaced by NF4 ones, and the input embedding placed as loading a checkpoint with
    the same precision places it.
    """
    if precision == "8bit":
        raise ModelError("random weights support bf16, fp16, fp32 and 4bit")
    if size not in SIZES:
        raise ModelError(f"unknown size {size!r}: choose one of {', '.join(SIZES)}")
    device = torch.device(device)
    tokenizer = family.build_tokenizer()
    processor = family.build_processor(tokenizer)
    torch.manual_seed(seed)
    config = family.build_config(tokenizer, size)
    check_quantizable(config, precision)
    with device:
        model = family.model_class()._from_config(config, dtype=DTYPES.get(precision, torch.bfloat16))
    model.generation_config = family.build_generation_config(tokenizer)
    if precision == "4bit":
        quantize_4bit(model, device, family.keep_unquantized)
    place_embeddings(model, precision, device, embeddings_on_cpu)
    model.eval()
    decoder = choose_decoder(model, precision, device, compile)
    thinking = family.thinking_style(config, processor)
    return AQAModel(model, processor, family, f"random-{size}-{family.name}", precision, device, decoder, thinking)


def quantize_4bit(model: nn.Module, device: torch.device, keep: tuple[str, ...]) -> None:
    """Swap each linear layer outside `keep` for a bitsandbytes NF4 one (double quantization, bf16 compute): the
    settings `load_model(..., "4bit")` gives transformers. One layer at a time, so memory falls as it goes."""
    import bitsandbytes as bnb  # optional (no macOS wheel), and only 4-bit needs it

    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear) or name.startswith(keep):
            continue
        layer = bnb.nn.Linear4bit(
            module.in_features,
            module.out_features,
            bias=module.bias is not None,
            compute_dtype=torch.bfloat16,
            quant_type="nf4",
            device="meta",
        )
        weight = bnb.nn.Params4bit(module.weight.data, requires_grad=False, quant_type="nf4", module=layer)
        layer.weight = weight.to(device)  # moving a Params4bit quantizes it
        if module.bias is not None:
            layer.bias = module.bias
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer)
    if device.type == "cuda":
        torch.cuda.empty_cache()


def build_tiny_checkpoint(directory: str | Path, seed: int = 0, family: Family = QWEN2_AUDIO) -> Path:
    """Write a tiny random checkpoint of `family` (model, processor, chat template) to `directory`; an Omni family's
    is a whole Omni checkpoint whose thinker answers, as its published ones are."""
    directory = Path(directory)
    model = build_random_model("tiny", seed=seed, compile=False, family=family)
    family.checkpoint_model(model.hf, model.tokenizer).save_pretrained(directory)
    model.processor.save_pretrained(directory)
    return directory
