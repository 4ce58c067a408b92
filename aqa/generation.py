"""Generating the answer text from the prefilled cache: greedy by default, or the checkpoint's own sampling.

Eager decoding grows a DynamicCache token by token; each step then costs a few times what reading the weights does
(Python and kernel-launch overhead at batch 1). The fast path copies the prefilled prompt into a preallocated
StaticCache and lets `generate` run the decode step under torch.compile ("reduce-overhead": CUDA graphs on a GPU).
Its length is rounded up to STATIC_LENGTH_STEP so that a new prompt length does not recompile; each new (batch
size, length) pair compiles once (`warm_up` pays for the usual one at load). Both paths give the same tokens.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Sequence

import torch
from transformers import CompileConfig, DynamicCache, GenerationConfig, StaticCache, StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from aqa.model import AQAModel
from aqa.options import ANSWER_TOKENS, DecodingOptions

STATIC_LENGTH_STEP = 512  # static caches hold a multiple of this many positions


class StopWhenSet(StoppingCriteria):
    """Ends generation at the next step once `event` is set (the app's Stop button, a closed stream)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def compile_config(device: torch.device) -> CompileConfig:
    """CUDA graphs on a GPU; plain inductor code elsewhere (only when asked for: it is slower to start)."""
    config = CompileConfig(
        fullgraph=False, dynamic=False, mode="reduce-overhead" if device.type == "cuda" else "default"
    )
    config._compile_all_devices = True  # generate compiles on GPUs only unless told; `decoder` has decided already
    return config


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
    model: AQAModel,
    inputs: dict[str, torch.Tensor],
    cache: DynamicCache,
    decoding: DecodingOptions,
    streamer: BaseStreamer | None = None,
    stop: threading.Event | None = None,
) -> list[str]:
    """Decode from the prefilled cache: only the prompt's last token is new to the model. `streamer` receives the
    tokens as they come (batch 1); `stop` ends generation early when set."""
    config = generation_config(model, decoding)
    tokens = generate_tokens(model, inputs, cache, config, streamer, stop)
    return decode_tokens(model, tokens)


def generate_tokens(
    model: AQAModel,
    inputs: dict[str, torch.Tensor],
    cache: DynamicCache,
    config: GenerationConfig,
    streamer: BaseStreamer | None = None,
    stop: threading.Event | None = None,
    room: int | None = None,
) -> torch.Tensor:
    """The new tokens `generate` writes from the prefilled cache, on the model's decoder (eager, static, compiled);
    a static cache holds `room` positions after the prompt (default: max_new_tokens), rounded up."""
    ids = inputs["input_ids"]
    model.family.reset_for_generation(model.hf)
    if model.decoder != "eager":
        cache = static_copy(model, cache, ids.shape[1] + (room or config.max_new_tokens))
        if model.decoder == "compiled":
            config.compile_config = compile_config(model.device)
        else:
            config.disable_compile = True
    output = model.hf.generate(
        input_ids=ids,
        attention_mask=inputs["attention_mask"],
        cache=cache,
        generation_config=config,
        streamer=streamer,
        stopping_criteria=[StopWhenSet(stop)] if stop is not None else None,
    )
    return output[:, ids.shape[1] :]


def static_copy(model: AQAModel, cache: DynamicCache, length: int) -> StaticCache:
    """The prefilled prompt in a StaticCache with room for `length` positions, rounded up to STATIC_LENGTH_STEP."""
    size = math.ceil(length / STATIC_LENGTH_STEP) * STATIC_LENGTH_STEP
    static = StaticCache(config=model.hf.config, max_cache_len=size)
    for target, source in zip(static.layers, cache.layers):
        target.update(source.keys, source.values)  # writes positions 0.. and sets the filled length
    return static


def warm_up(model: AQAModel, prompt_lengths: Sequence[int] = (340, 840), tokens: int = 6) -> float:
    """Compile the decode step (and record its CUDA graphs) for batch 1 at the static lengths of a 10 s and a 30 s
    question in answer mode, so that the first real question does not pay for it; returns the seconds it took."""
    if model.decoder != "compiled":
        return 0.0
    start = time.perf_counter()
    with torch.inference_mode():
        for length in prompt_lengths:  # a prompt of this many tokens, answered with the default budget
            ids = torch.full((1, length), model.tokenizer.pad_token_id, device=model.device)
            cache = DynamicCache(config=model.hf.config)
            model.hf.get_decoder()(input_ids=ids[:, :-1], cache=cache, use_cache=True)
            config = exactly(generation_config(model, DecodingOptions()), tokens)
            inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            generate_tokens(model, inputs, cache, config, room=ANSWER_TOKENS)  # a real answer's static length
    return time.perf_counter() - start


def exactly(config: GenerationConfig, tokens: int) -> GenerationConfig:
    """The config made to write exactly `tokens` tokens, whatever the weights say (warm-up and timing only)."""
    config.max_new_tokens, config.min_new_tokens = tokens, tokens
    return config


def decode_tokens(model: AQAModel, tokens: torch.Tensor | Sequence[Sequence[int]]) -> list[str]:
    """The text of generated tokens, one string per row, special tokens removed, as `generate`'s output is read."""
    return model.processor.batch_decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
