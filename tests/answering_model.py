"""A tiny checkpoint that answers like a trained model: the fixture behind the tests of answers read off the scoring
pass, and `python -m bench.fit_tiny_answers TINY OUT` for the benchmarks."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from aqa.bench import OPTIONS, QUESTION, write_clips
from aqa.inputs import build_inputs, prepare
from aqa.loading import load_model
from aqa.model import AQAModel
from aqa.options import Question


def fit_tiny_answers(source: str | Path, directory: str | Path, steps: int = 60, seed: int = 0) -> Path:
    """Copy the tiny checkpoint at `source` to `directory`, fine-tuned to answer the bench's question with
    `<answer>{OPTIONS[0]}</answer>` and stop, whatever the clip.

    Random weights write gibberish, so answer mode on them always decodes token by token; a trained model such as
    R1-AQA mostly writes one option and stops, which answer mode reads off the scoring pass. This gives the bench and
    the tests that behaviour offline, in seconds: only the language model's layers and head are trained, on input
    embeddings (audio included) computed once.
    """
    torch.manual_seed(seed)
    model = load_model(str(source), precision="fp32", device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        items = [prepare(Question(path, QUESTION, OPTIONS)) for path in write_clips(Path(folder), 2, 10.0)]
    inputs = build_inputs(model, items, think=False)
    target = model.tokenizer(
        [f"<answer>{OPTIONS[0]}</answer><|im_end|>"] * len(items), add_special_tokens=False, return_tensors="pt"
    ).input_ids
    mask = torch.cat([inputs["attention_mask"], torch.ones_like(target)], dim=1)
    embeddings = input_embeddings(model, torch.cat([inputs["input_ids"], target], dim=1), mask, inputs)
    language_model = model.hf.model.language_model
    trained = [*language_model.layers.parameters(), *language_model.norm.parameters()]
    optimizer = torch.optim.Adam([*trained, *model.hf.lm_head.parameters()], lr=3e-3)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64-wide model: more threads only wait on each other, badly so on a busy machine
    try:
        for _ in range(steps):
            hidden = language_model(inputs_embeds=embeddings, attention_mask=mask, position_ids=positions)
            logits = model.hf.lm_head(hidden.last_hidden_state[:, -target.shape[1] - 1 : -1])
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.hf.save_pretrained(directory)
    model.processor.save_pretrained(directory)
    return Path(directory)


@torch.no_grad()
def input_embeddings(model: AQAModel, ids: torch.Tensor, mask: torch.Tensor, inputs: dict) -> torch.Tensor:
    """The language model's input embeddings with the audio merged in, as the full model computes them."""
    captured = {}
    language_model = model.hf.model.language_model
    hook = language_model.register_forward_pre_hook(lambda _, args, kwargs: captured.update(kwargs), with_kwargs=True)
    try:
        model.hf(
            input_ids=ids,
            attention_mask=mask,
            input_features=inputs["input_features"],
            feature_attention_mask=inputs["feature_attention_mask"],
        )
    finally:
        hook.remove()
    return captured["inputs_embeds"].detach()
