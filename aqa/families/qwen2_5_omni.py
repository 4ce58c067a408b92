"""Qwen2.5-Omni: a thinker (Qwen2-Audio's encoder lineage, a vision encoder and a Qwen2.5-7B language model) that
writes text, and a talker that speaks it. Only the thinker is loaded: text answers need nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import (
    GenerationConfig,
    Qwen2_5OmniConfig,
    Qwen2_5OmniForConditionalGeneration,
    Qwen2_5OmniProcessor,
    Qwen2_5OmniThinkerConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

from aqa.families.base import Family, Published, whole_checkpoint
from aqa.families.tokenizers import byte_tokenizer, greedy_generation_config, whisper_features

TEMPLATES = Path(__file__).resolve().parent / "templates"
# The tokenizer's special tokens (Qwen2.5-Omni-7B's tokenizer_config.json), and the names its processor reads them by.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|vision_bos|>",
    "<|vision_eos|>",
    "<|IMAGE|>",
    "<|VIDEO|>",
]
NAMED_TOKENS = {
    "audio_token": "<|AUDIO|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
    "image_token": "<|IMAGE|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
}

# Qwen2.5-Omni-7B's thinker (config.json, thinker_config): a 32-layer Whisper-large-style audio encoder projecting
# to 3584, a 32-block vision encoder, and Qwen2.5-7B (28 layers, 28 heads, 4 KV heads, vocabulary 152064).
FULL_AUDIO = dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120, output_dim=3584)
FULL_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584)
FULL_TEXT = dict(
    vocab_size=152064,
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
)
# Tiny: the thinker shaped like the real one (mrope sections sum to half the 16-wide heads), and a one-layer talker
# and vocoder so that a tiny checkpoint holds all three parts, as the real one does.
TINY_AUDIO = dict(d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128, output_dim=64)
TINY_VISION = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64)
TINY_TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
)
TINY_TALKER = dict(
    embedding_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=16,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
)
TINY_TOKEN2WAV = dict(
    dit_config=dict(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        head_dim=16,
        emb_dim=16,
        enc_emb_dim=16,
        enc_dim=16,
        enc_channels=[16, 16, 16, 16, 48],
        enc_attention_channels=8,
        enc_se_channels=8,
        num_embeds=64,
        look_ahead_layers=[0],
        look_backward_layers=[0],
    ),
    bigvgan_config=dict(upsample_initial_channel=32),
)


def token_ids(tokenizer) -> dict[str, int]:
    """The config fields that name special tokens, with the tokenizer's ids for them."""
    ids = tokenizer.convert_tokens_to_ids
    return dict(
        audio_token_index=ids("<|AUDIO|>"),
        image_token_index=ids("<|IMAGE|>"),
        video_token_index=ids("<|VIDEO|>"),
        audio_start_token_id=ids("<|audio_bos|>"),
        audio_end_token_id=ids("<|audio_eos|>"),
        vision_start_token_id=ids("<|vision_bos|>"),
        vision_end_token_id=ids("<|vision_eos|>"),
    )


@dataclass(frozen=True)
class Qwen2_5OmniFamily(Family):
    def model_class(self):
        return Qwen2_5OmniThinkerForConditionalGeneration

    def answering_config(self, config):
        return config.thinker_config if config.model_type == "qwen2_5_omni" else config

    def reset_for_generation(self, hf) -> None:
        # The thinker keeps the last batch's rotary-position offsets and, given a prefilled cache, reuses them: stale
        # ones (another batch size) would break the next call. For audio and text alone they are zero, and `generate`
        # computes them afresh when none are kept.
        hf.model.rope_deltas = None

    def build_tokenizer(self):
        return byte_tokenizer(SPECIAL_TOKENS, eos="<|im_end|>", pad="<|endoftext|>", named=NAMED_TOKENS)

    def build_processor(self, tokenizer) -> Qwen2_5OmniProcessor:
        return Qwen2_5OmniProcessor(
            image_processor=Qwen2VLImageProcessor(),
            video_processor=Qwen2VLVideoProcessor(),
            # Qwen2.5-Omni-7B's preprocessor_config.json: 300 s windows (30000 frames), padded to that length.
            feature_extractor=whisper_features(chunk_length=300),
            tokenizer=tokenizer,
            chat_template=(TEMPLATES / "qwen2.5-omni.jinja").read_text(),
        )

    def build_config(self, tokenizer, size: str) -> Qwen2_5OmniThinkerConfig:
        tiny = size == "tiny"
        audio, vision, text = (TINY_AUDIO, TINY_VISION, TINY_TEXT) if tiny else (FULL_AUDIO, FULL_VISION, FULL_TEXT)
        return Qwen2_5OmniThinkerConfig(
            audio_config=dict(num_mel_bins=128, max_source_positions=1500, n_window=100, **audio),
            vision_config=vision,
            text_config={"vocab_size": len(tokenizer), **text},
            **token_ids(tokenizer),
        )

    def build_generation_config(self, tokenizer) -> GenerationConfig:
        return greedy_generation_config(tokenizer, stops=("<|im_end|>", "<|endoftext|>"))

    def checkpoint_model(self, model, tokenizer):
        talker = dict(vocab_size=len(tokenizer), **TINY_TALKER, **token_ids(tokenizer))
        talker.update(tts_text_start_token_id=0, tts_text_end_token_id=1, tts_text_pad_token_id=2)
        talker.update(tts_codec_start_token_id=3, tts_codec_end_token_id=4, tts_codec_pad_token_id=5)
        talker["tts_codec_mask_token_id"] = 6
        config = Qwen2_5OmniConfig(
            thinker_config=model.config.to_dict(), talker_config=talker, token2wav_config=TINY_TOKEN2WAV
        )
        return whole_checkpoint(Qwen2_5OmniForConditionalGeneration, config, model)


QWEN2_5_OMNI = Qwen2_5OmniFamily(
    name="qwen2.5-omni",
    title="Qwen2.5-Omni",
    model_types=("qwen2_5_omni", "qwen2_5_omni_thinker"),
    audio_keys=("input_features", "feature_attention_mask"),
    # The processor pads or cuts every clip to its feature extractor's 300 s (n_samples 4800000); the encoder
    # attends in 2 s windows, so a long clip costs in proportion to its length.
    heard_seconds=300.0,
    audio_tokens_per_second=25.0,
    keep_unquantized=("model.audio_tower", "model.visual", "lm_head"),
    published=(
        Published(
            hub_id="Qwen/Qwen2.5-Omni-7B",
            what="the thinker answers in text (the talker, which speaks, is not loaded)",
            mmau="65.6 (test-mini v1); 71.5 (test-mini v05.15.25)",
            mmar="56.7",
            sources="Qwen2.5-Omni technical report (arXiv 2503.20215); MMAU leaderboard; MMAR README",
            license="Apache-2.0",
        ),
    ),
)
