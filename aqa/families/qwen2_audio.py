"""Qwen2-Audio (and R1-AQA, its GRPO post-training): a Whisper-large-style encoder and a Qwen-7B language model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import (
    GenerationConfig,
    Qwen2AudioConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
)

from aqa.families.base import Family, Published
from aqa.families.tokenizers import byte_tokenizer, whisper_features

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]

# The template Qwen2-Audio-7B-Instruct (and so R1-AQA) ships in its tokenizer config: the audio placeholder is
# rendered only when the content dict has an `audio` or `audio_url` key, unlike transformers 5's built-in default
# (which also checks `type == 'audio'`). Tests behave like the real model only with this one.
CHAT_TEMPLATE = (Path(__file__).resolve().parent / "templates" / "qwen2-audio.jinja").read_text()

# Full-size shapes of Qwen2-Audio-7B(-Instruct) and R1-AQA (their config.json: a Whisper-large-style encoder and a
# Qwen-7B language model, 8.40B parameters).
FULL_AUDIO = dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120)
FULL_TEXT = dict(
    vocab_size=156032,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=8192,
)
# Small but shaped like the real thing; linear sizes stay multiples of 32 for bitsandbytes' CPU kernels.
TINY_AUDIO = dict(d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128)
TINY_TEXT = dict(
    vocab_size=288,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
)


@dataclass(frozen=True)
class Qwen2AudioFamily(Family):
    def model_class(self):
        return Qwen2AudioForConditionalGeneration

    def build_tokenizer(self):
        return byte_tokenizer(SPECIAL_TOKENS, eos="<|endoftext|>", pad="<|endoftext|>")

    def build_processor(self, tokenizer) -> Qwen2AudioProcessor:
        # 128 mel bins and 30 s windows, exactly like the real model: the feature extractor's frame count must equal
        # 2 * max_source_positions of the encoder.
        return Qwen2AudioProcessor(
            feature_extractor=whisper_features(chunk_length=30), tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
        )

    def build_config(self, tokenizer, size: str) -> Qwen2AudioConfig:
        audio, text = (TINY_AUDIO, TINY_TEXT) if size == "tiny" else (FULL_AUDIO, FULL_TEXT)
        ids = tokenizer.convert_tokens_to_ids
        text_config = dict(
            model_type="qwen2",
            rope_theta=10000.0,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            bos_token_id=ids("<|endoftext|>"),
            eos_token_id=ids("<|im_end|>"),
            pad_token_id=ids("<|endoftext|>"),
            **text,
        )
        audio_config = dict(model_type="qwen2_audio_encoder", num_mel_bins=128, max_source_positions=1500, **audio)
        return Qwen2AudioConfig(audio_config=audio_config, text_config=text_config, audio_token_id=ids("<|AUDIO|>"))

    def build_generation_config(self, tokenizer) -> GenerationConfig:
        # Qwen2-Audio-7B-Instruct ships a sampling config (its generation_config.json); the same here, so that
        # `--sample` and R1-AQA's evaluation protocol have it to use.
        ids = tokenizer.convert_tokens_to_ids
        return GenerationConfig(
            do_sample=True,
            top_k=0,
            top_p=0.5,
            temperature=0.7,
            repetition_penalty=1.1,
            eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")],
            pad_token_id=ids("<|endoftext|>"),
            bos_token_id=ids("<|endoftext|>"),
        )


QWEN2_AUDIO = Qwen2AudioFamily(
    name="qwen2-audio",
    title="Qwen2-Audio",
    model_types=("qwen2_audio",),
    audio_keys=("input_features", "feature_attention_mask"),
    # The Whisper feature extractor pads or cuts every clip to 30 s (3000 frames).
    heard_seconds=30.0,
    # One <|AUDIO|> expands to one token per encoder output: 100 frames a second, halved by a stride-2 convolution
    # and again by pooling.
    audio_tokens_per_second=25.0,
    keep_unquantized=("model.audio_tower", "model.multi_modal_projector", "lm_head"),
    published=(
        Published(
            hub_id="mispeech/r1-aqa",
            what="R1-AQA: Qwen2-Audio-7B-Instruct after GRPO on AVQA (this project's default)",
            mmau="64.50 (test-mini v1: the 2025-01-28 or 2025-03-25 file)",
            mmar="47.6",
            sources="R1-AQA model card (huggingface.co/mispeech/r1-aqa); MMAR README (github.com/ddlBoJack/MMAR)",
            license="Apache-2.0",
        ),
        Published(
            hub_id="Qwen/Qwen2-Audio-7B-Instruct",
            what="the base R1-AQA was trained from",
            mmau="—",
            mmar="—",
            sources="—",
            license="Apache-2.0",
        ),
    ),
)
