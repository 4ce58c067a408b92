"""Offline stand-ins for the families' tokenizers and feature extractors, for the tiny random checkpoints.

A byte-level BPE tokenizer with no merges reads any text (every UTF-8 byte is one token) and carries the family's
special tokens with the real ones' strings, so chat templates, placeholders and stop tokens behave as in the real
model; only the ids and the vocabulary size differ.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import GenerationConfig, Qwen2Tokenizer, WhisperFeatureExtractor
from transformers.convert_slow_tokenizer import bytes_to_unicode


def byte_tokenizer(
    special_tokens: Sequence[str], eos: str, pad: str, named: dict[str, str] | None = None
) -> Qwen2Tokenizer:
    """Every UTF-8 byte one token, then `special_tokens` in order; `named` gives processors the attributes they read
    (`tokenizer.audio_token` ...), as the real tokenizer configs' extra special tokens do."""
    byte_chars = sorted(bytes_to_unicode().values())
    vocab = {ch: i for i, ch in enumerate(byte_chars)}
    for token in special_tokens:
        vocab[token] = len(vocab)
    extra = {"extra_special_tokens": named} if named else {}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=[], unk_token=special_tokens[0], eos_token=eos, pad_token=pad, **extra
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in special_tokens if t not in (eos, pad)]})
    tokenizer.padding_side = "left"
    return tokenizer


def whisper_features(chunk_length: int, **settings) -> WhisperFeatureExtractor:
    """Whisper-style log-mel features: 128 bins at 16 kHz, `chunk_length` seconds per padded window."""
    return WhisperFeatureExtractor(
        feature_size=128, sampling_rate=16000, chunk_length=chunk_length, return_attention_mask=True, **settings
    )


def greedy_generation_config(tokenizer, stops: Sequence[str], pad: str = "<|endoftext|>") -> GenerationConfig:
    """A generation config with no sampling settings of its own, ending at `stops`: what the tiny Omni and Audio
    Flamingo 3 checkpoints carry (their published generation configs set no thinker sampling)."""
    ids = tokenizer.convert_tokens_to_ids
    stop_ids = [ids(token) for token in stops]
    return GenerationConfig(
        eos_token_id=stop_ids if len(stop_ids) > 1 else stop_ids[0], pad_token_id=ids(pad), bos_token_id=ids(pad)
    )
