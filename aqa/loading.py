"""The one place where a ModelSpec (the model flags of every command and the app) becomes a loaded model."""

from __future__ import annotations

import sys

import torch

from aqa.model import AQAModel, default_device, default_precision, load_model
from aqa.options import ModelSpec
from aqa.random_weights import build_random_model


def load(spec: ModelSpec, say: bool = True) -> AQAModel:
    """A checkpoint (R1-AQA by default), or with `random_weights` that architecture with random weights; `say`
    prints what is loaded on stderr, as the commands do before the seconds (or minutes) it takes."""
    if spec.random_weights is None:
        if say:
            print(f"loading {spec.name} ...", file=sys.stderr, flush=True)
        return load_model(spec.name, spec.precision, spec.device, spec.embeddings_on_cpu)
    device = torch.device(spec.device) if spec.device else default_device()
    precision = spec.precision or default_precision(device)
    if say:
        print(f"building random-weight {spec.random_weights} model ({precision}) ...", file=sys.stderr, flush=True)
    return build_random_model(spec.random_weights, precision, device, spec.embeddings_on_cpu)
