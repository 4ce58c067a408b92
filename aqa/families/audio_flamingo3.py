"""Audio Flamingo 3 (NVIDIA): a Whisper-large-v3 encoder that hears a clip in 30 s windows (up to 20 of them,
10 minutes), a projector, and a Qwen2.5-7B language model. Non-commercial licence."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import (
    AudioFlamingo3Config,
    AudioFlamingo3ForConditionalGeneration,
    AudioFlamingo3Processor,
    GenerationConfig,
)

from aqa.families.base import Family, Published
from aqa.families.tokenizers import byte_tokenizer, greedy_generation_config, whisper_features

TEMPLATES = Path(__file__).resolve().parent / "templates"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<sound>"]

# nvidia/audio-flamingo-3-hf's config.json: Whisper-large-v3's encoder and Qwen2.5-7B (28 layers, 28 heads, 4 KV
# heads, vocabulary 151672 with <sound>).
FULL_AUDIO = dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=20, intermediate_size=5120)
FULL_TEXT = dict(
    vocab_size=151672,
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    rope_theta=1000000.0,
)
TINY_AUDIO = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
TINY_TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    rope_theta=10000.0,
)


@dataclass(frozen=True)
class AudioFlamingo3Family(Family):
    def model_class(self):
        return AudioFlamingo3ForConditionalGeneration

    def build_tokenizer(self):
        return byte_tokenizer(SPECIAL_TOKENS, eos="<|im_end|>", pad="<|endoftext|>")

    def build_processor(self, tokenizer) -> AudioFlamingo3Processor:
        return AudioFlamingo3Processor(
            # audio-flamingo-3-hf's processor_config.json: Whisper's 30 s windows; the processor cuts a clip into
            # as many as it needs, up to max_audio_len (its default, 600 s).
            feature_extractor=whisper_features(chunk_length=30),
            tokenizer=tokenizer,
            chat_template=(TEMPLATES / "audio-flamingo-3.jinja").read_text(),
            audio_token="<sound>",
            max_audio_len=600,
        )

    def build_config(self, tokenizer, size: str) -> AudioFlamingo3Config:
        audio, text = (TINY_AUDIO, TINY_TEXT) if size == "tiny" else (FULL_AUDIO, FULL_TEXT)
        ids = tokenizer.convert_tokens_to_ids
        return AudioFlamingo3Config(
            audio_config=dict(model_type="audioflamingo3_encoder", num_mel_bins=128, **audio),
            text_config={"model_type": "qwen2", "vocab_size": len(tokenizer), **text},
            audio_token_id=ids("<sound>"),
        )

    def build_generation_config(self, tokenizer) -> GenerationConfig:
        return greedy_generation_config(tokenizer, stops=("<|im_end|>",))


AUDIO_FLAMINGO_3 = AudioFlamingo3Family(
    name="audio-flamingo-3",
    title="Audio Flamingo 3",
    model_types=("audioflamingo3",),
    audio_keys=("input_features", "input_features_mask"),
    # Its processor splits a clip into 30 s windows, each encoded alone, all placed in the prompt: up to 20 windows.
    heard_seconds=600.0,
    audio_tokens_per_second=25.0,
    keep_unquantized=("model.audio_tower", "model.multi_modal_projector", "lm_head"),
    published=(
        Published(
            hub_id="nvidia/audio-flamingo-3-hf",
            what="Audio Flamingo 3 (transformers' port)",
            mmau="73.3 (test-mini v05.15.25)",
            mmar="—",
            sources="MMAU leaderboard (sakshi113.github.io/mmau_homepage)",
            license="NVIDIA OneWay Noncommercial License",
        ),
    ),
)
