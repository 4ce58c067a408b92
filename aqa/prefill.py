"""The shared prompt pass: the audio encoder and the prompt run once per question, and generation and option scoring
both continue from its key/value cache."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from aqa.model import AQAModel


def positions_of(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding, as `generate` computes them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def prefill(model: AQAModel, inputs: dict[str, torch.Tensor]) -> DynamicCache:
    """Run the audio encoder and the prompt, all but its last token, once: generation and scoring continue from it.

    The base model is called rather than the LM head, since no logits of the prompt are needed.
    """
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    cache = DynamicCache(config=model.hf.config)
    model.hf.model(
        input_ids=ids[:, :-1],
        attention_mask=mask[:, :-1],
        position_ids=positions_of(mask)[:, :-1],
        cache=cache,
        **{key: inputs[key] for key in model.family.audio_keys},
        use_cache=True,
    )
    return cache


def crop(cache: DynamicCache, length: int) -> None:
    """Cut the cache back to its first `length` positions (the shared prompt), dropping what came after."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


def copy_rows(cache: DynamicCache, index: torch.Tensor) -> DynamicCache:
    """A new cache holding copies of the given batch rows."""
    return DynamicCache(ddp_cache_data=[(layer.keys[index], layer.values[index]) for layer in cache.layers])
