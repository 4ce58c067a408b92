"""Generating the answer text from the prefilled cache: greedy by default, or the checkpoint's own sampling."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from transformers import DynamicCache, GenerationConfig

from aqa.model import AQAModel
from aqa.options import DecodingOptions

# Generation settings that make greedy decoding more than an argmax per step, each with the value that means "off":
# reading greedy answers off the scoring pass is exact only when none of them is active.
ARGMAX_CHANGERS = {
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "min_length": 0,
    "min_new_tokens": 0,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "sequence_bias": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "exponential_decay_length_penalty": None,
    "guidance_scale": 1.0,
    "watermarking_config": None,
    "stop_strings": None,
}


def generation_config(model: AQAModel, decoding: DecodingOptions) -> GenerationConfig:
    """Pure greedy decoding by default (no repetition penalty); the checkpoint's own config with --sample."""
    own = model.hf.generation_config
    if decoding.sample:
        config = GenerationConfig.from_dict(own.to_dict())
        config.max_new_tokens = decoding.token_budget
        return config
    return GenerationConfig(
        do_sample=False,
        num_beams=1,
        # Explicit neutral values: unset fields would be filled from the checkpoint's sampling config.
        temperature=1.0,
        top_p=1.0,
        top_k=50,
        repetition_penalty=1.0,
        max_new_tokens=decoding.token_budget,
        eos_token_id=own.eos_token_id,
        pad_token_id=own.pad_token_id if own.pad_token_id is not None else model.tokenizer.pad_token_id,
    )


def plain_greedy(model: AQAModel, decoding: DecodingOptions) -> bool:
    """True when greedy decoding is an argmax per step that stops at an end token: no penalty, ban or bias, also
    none that `generate` would merge in from the checkpoint's generation config for the settings we leave unset."""
    config = copy.deepcopy(generation_config(model, decoding))
    config.update(**model.hf.generation_config.to_dict(), defaults_only=True)
    return all(getattr(config, name, None) in (None, off) for name, off in ARGMAX_CHANGERS.items())


def generate_text(
    model: AQAModel, inputs: dict[str, torch.Tensor], cache: DynamicCache, decoding: DecodingOptions
) -> list[str]:
    """Decode from the prefilled cache: only the prompt's last token is new to the model."""
    ids = inputs["input_ids"]
    output = model.hf.generate(
        input_ids=ids,
        attention_mask=inputs["attention_mask"],
        cache=cache,
        generation_config=generation_config(model, decoding),
    )
    return decode_tokens(model, output[:, ids.shape[1] :])


def decode_tokens(model: AQAModel, tokens: torch.Tensor | Sequence[Sequence[int]]) -> list[str]:
    """The text of generated tokens, one string per row, special tokens removed, as `generate`'s output is read."""
    return model.processor.batch_decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
