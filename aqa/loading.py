"""Loading a model ready to answer: the public `aqa.load_model`, and `load(ModelSpec)`, the one place where the model
flags of every command (and the app) become a loaded model."""

from __future__ import annotations

import sys

import torch

from aqa.defaults import DEFAULT_MODEL
from aqa.families import Family, family_named, family_of
from aqa.generation import warm_up
from aqa.model import AQAModel, default_device, default_precision, load_checkpoint, read_config
from aqa.options import ModelSpec
from aqa.random_weights import build_random_model


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    precision: str | None = None,
    device: str | torch.device | None = None,
    embeddings_on_cpu: bool | None = None,
    compile: bool | None = None,
) -> AQAModel:
    """Load a checkpoint of any supported family (R1-AQA by default) ready for `aqa.answer`: Qwen2-Audio, the
    Qwen2.5-Omni or Qwen3-Omni thinker, Audio Flamingo 3, chosen from its config.

    precision: "bf16" (default on GPU), "fp32" (default on CPU), "fp16", "4bit" (NF4) or "8bit".
    device: "cuda", "cuda:1", "cpu", ...; the GPU when there is one.
    embeddings_on_cpu: keep the input embedding table (1.2 GiB for R1-AQA) in CPU memory on a GPU; by default only
    in 4-bit and 8-bit, which are chosen to save GPU memory.
    compile: decode generated text with a static cache under torch.compile (CUDA graphs); None: where it is faster,
    bf16/fp16 on a GPU. Compiling costs some seconds, paid here (and once more for each new batch size or length).
    """
    model = load_checkpoint(name_or_path, precision, device, embeddings_on_cpu, compile)
    return warmed(model)


def load(spec: ModelSpec, say: bool = True) -> AQAModel:
    """A checkpoint, or with `random_weights` that size of `spec.family`'s architecture with random weights; `say`
    prints what is loaded on stderr, as the commands do before the seconds (or minutes) it takes."""
    if spec.random_weights is None:
        if say:
            print(f"loading {spec.name} ...", file=sys.stderr, flush=True)
        return load_model(spec.name, spec.precision, spec.device, spec.embeddings_on_cpu, spec.compile)
    device = torch.device(spec.device) if spec.device else default_device()
    precision = spec.precision or default_precision(device)
    if say:
        print(
            f"building random-weight {spec.random_weights} {spec.family} model ({precision}) ...",
            file=sys.stderr,
            flush=True,
        )
    family = family_named(spec.family)
    model = build_random_model(
        spec.random_weights, precision, device, spec.embeddings_on_cpu, compile=spec.compile, family=family
    )
    return warmed(model)


def spec_family(spec: ModelSpec) -> Family:
    """The family of the model `spec` names, from its config alone (no weights are read): what a run records."""
    if spec.random_weights is not None:
        return family_named(spec.family)
    return family_of(read_config(spec.name, spec.precision or "fp32").model_type, spec.name)


def warmed(model: AQAModel) -> AQAModel:
    """The compiled decoder warmed up, its cost said on stderr (the app's start-up log shows it)."""
    if model.decoder == "compiled":
        print("compiling the decoding step (once per batch size and length) ...", file=sys.stderr, flush=True)
        seconds = warm_up(model)
        print(f"compiled the decoding step in {seconds:.1f} s", file=sys.stderr, flush=True)
    return model
