"""Qwen3-Omni (30B-A3B): a thinker whose language model is a mixture of experts (128 experts, 8 active per token:
about 3B of its 30B parameters work on each token), with its own audio encoder (13 tokens a second), and a talker
that speaks. Only the thinker is loaded. The Instruct checkpoint answers directly; the Thinking one, published
without a talker, reasons first. The tiny checkpoint is shaped like the Thinking one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken
from transformers import (
    GenerationConfig,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
    Qwen3OmniMoeConfig,
    Qwen3OmniMoeForConditionalGeneration,
    Qwen3OmniMoeProcessor,
    Qwen3OmniMoeThinkerConfig,
    Qwen3OmniMoeThinkerForConditionalGeneration,
)

from aqa.families.base import Family, Published, whole_checkpoint
from aqa.families.tokenizers import byte_tokenizer, greedy_generation_config, whisper_features

TEMPLATES = Path(__file__).resolve().parent / "templates"
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|audio_start|>",
    "<|audio_end|>",
    "<|audio_pad|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
NAMED_TOKENS = {
    "audio_token": "<|audio_pad|>",
    "audio_bos_token": "<|audio_start|>",
    "audio_eos_token": "<|audio_end|>",
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_bos_token": "<|vision_start|>",
    "vision_eos_token": "<|vision_end|>",
}
# Qwen3's tokenizer writes <think> and </think> as single tokens that are not special: decoding keeps them in the
# text, where the reasoning is read from.
THINK_TOKENS = [AddedToken("<think>", special=False, normalized=False), AddedToken("</think>", special=False)]

# Qwen3-Omni-30B-A3B's thinker (config.json, thinker_config): a 32-layer audio encoder projecting to 2048, a 27-block
# vision encoder, and a 48-layer mixture-of-experts language model (hidden 2048, 32 heads of 128, 4 KV heads, 128
# experts of width 768, 8 per token, vocabulary 152064).
FULL_AUDIO = dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120, output_dim=2048)
FULL_VISION = dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=2048)
FULL_TEXT = dict(
    vocab_size=152064,
    hidden_size=2048,
    num_hidden_layers=48,
    num_attention_heads=32,
    num_key_value_heads=4,
    head_dim=128,
    moe_intermediate_size=768,
    num_experts=128,
    num_experts_per_tok=8,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [24, 20, 20]},
)
TINY_AUDIO = dict(
    d_model=64,
    encoder_layers=2,
    encoder_attention_heads=4,
    encoder_ffn_dim=128,
    output_dim=64,
    downsample_hidden_size=32,
)
TINY_VISION = dict(
    depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, deepstack_visual_indexes=[0]
)
TINY_TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    moe_intermediate_size=32,
    num_experts=4,
    num_experts_per_tok=2,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
)


@dataclass(frozen=True)
class Qwen3OmniFamily(Family):
    def model_class(self):
        return Qwen3OmniMoeThinkerForConditionalGeneration

    def answering_config(self, config):
        return config.thinker_config if config.model_type == "qwen3_omni_moe" else config

    def reset_for_generation(self, hf) -> None:
        # As Qwen2.5-Omni's thinker: stale rotary-position offsets of another batch must not be reused.
        hf.model.rope_deltas = None

    def build_tokenizer(self):
        tokenizer = byte_tokenizer(SPECIAL_TOKENS, eos="<|im_end|>", pad="<|endoftext|>", named=NAMED_TOKENS)
        tokenizer.add_tokens(THINK_TOKENS)
        return tokenizer

    def build_processor(self, tokenizer) -> Qwen3OmniMoeProcessor:
        return Qwen3OmniMoeProcessor(
            image_processor=Qwen2VLImageProcessor(patch_size=16),
            video_processor=Qwen2VLVideoProcessor(patch_size=16),
            # Qwen3-Omni-30B-A3B's preprocessor_config.json sets no chunk_length, so Whisper's 30 s default stands
            # (its n_samples and nb_max_frames are recomputed from it); the processor pads to the longest clip of a
            # batch and never cuts one.
            feature_extractor=whisper_features(chunk_length=30),
            tokenizer=tokenizer,
            chat_template=(TEMPLATES / "qwen3-omni-thinking.jinja").read_text(),
        )

    def build_config(self, tokenizer, size: str) -> Qwen3OmniMoeThinkerConfig:
        tiny = size == "tiny"
        audio, vision, text = (TINY_AUDIO, TINY_VISION, TINY_TEXT) if tiny else (FULL_AUDIO, FULL_VISION, FULL_TEXT)
        ids = tokenizer.convert_tokens_to_ids
        return Qwen3OmniMoeThinkerConfig(
            audio_config=dict(num_mel_bins=128, max_source_positions=1500, n_window=50, **audio),
            vision_config=vision,
            text_config={"vocab_size": len(tokenizer), **text},
            audio_token_id=ids("<|audio_pad|>"),
            image_token_id=ids("<|image_pad|>"),
            video_token_id=ids("<|video_pad|>"),
            audio_start_token_id=ids("<|audio_start|>"),
            vision_start_token_id=ids("<|vision_start|>"),
        )

    def build_generation_config(self, tokenizer) -> GenerationConfig:
        return greedy_generation_config(tokenizer, stops=("<|im_end|>", "<|endoftext|>"))

    def thinking_style(self, config, processor) -> str:
        # The Thinking checkpoint is published without a talker (enable_audio_output false) and reasons in
        # <think> ... </think> before it answers; the Instruct one speaks and answers directly. Its chat template
        # cannot tell them apart: both only parse <think> blocks out of earlier turns.
        if config.model_type == "qwen3_omni_moe" and not config.enable_audio_output:
            return "native"
        return "none"

    def checkpoint_model(self, model, tokenizer):
        # A checkpoint without a talker, shaped as the Thinking one is published: the thinker's weights under
        # `thinker.`, and the Thinking checkpoint's chat template.
        config = Qwen3OmniMoeConfig(thinker_config=model.config.to_dict(), enable_audio_output=False)
        return whole_checkpoint(Qwen3OmniMoeForConditionalGeneration, config, model)


QWEN3_OMNI = Qwen3OmniFamily(
    name="qwen3-omni",
    title="Qwen3-Omni",
    model_types=("qwen3_omni_moe", "qwen3_omni_moe_thinker"),
    audio_keys=("input_features", "feature_attention_mask"),
    # The processor never cuts a clip (Qwen3-Omni's report: audio up to 40 minutes); the encoder attends in windows,
    # so cost grows with length. Clips are bounded by the audio loader's duration caps.
    heard_seconds=2400.0,
    # 13 tokens per 100 feature frames (one second): three stride-2 convolutions over 1 s chunks.
    audio_tokens_per_second=13.0,
    keep_unquantized=("model.audio_tower", "model.visual", "lm_head"),
    published=(
        Published(
            hub_id="Qwen/Qwen3-Omni-30B-A3B-Instruct",
            what="Instruct (the thinker answers in text)",
            mmau="77.5 (test-mini v05.15.25)",
            mmar="—",
            sources="Qwen3-Omni technical report (arXiv 2509.17765, Table 7)",
            license="Apache-2.0",
        ),
        Published(
            hub_id="Qwen/Qwen3-Omni-30B-A3B-Thinking",
            what="Thinking (reasons in <think> before answering)",
            mmau="75.4 (test-mini v05.15.25)",
            mmar="66.4",
            sources="Qwen3-Omni technical report (arXiv 2509.17765, Table 7); MMAR README",
            license="Apache-2.0",
        ),
    ),
)
