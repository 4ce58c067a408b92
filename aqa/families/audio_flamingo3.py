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

from aqa.families.base import LANGUAGE_MODEL_LINEAR_LAYERS, Family, Published, whisper_encoder_lengths
from aqa.families.tokenizers import byte_tokenizer, greedy_generation_config, whisper_features

TEMPLATES = Path(__file__).resolve().parent / "templates"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<sound>"]
# The processor's windows (audio-flamingo-3-hf's processor_config.json): Whisper's 30 s chunk at 16 kHz, at most
# max_audio_len (600 s) / 30 s of them per clip.
WINDOW_SAMPLES = 30 * 16000
MAX_WINDOWS = 20

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

    # The processor's features are one row per 30 s window of every clip of the batch, all clips' windows in a row:
    # a batch's feature rows are not its rows. By row, each clip's windows are kept under its own row, padded with
    # empty windows (no frame in the mask) to the batch's most; the forward gets the real windows back, in order.
    def audio_by_row(self, inputs, clip_samples):
        counts = [windows_of(samples) for samples in clip_samples]
        features, mask = inputs["input_features"], inputs["input_features_mask"]
        if sum(counts) != len(features):
            raise RuntimeError(f"the processor made {len(features)} windows of features, the clips {sum(counts)}")
        rows = len(counts)
        by_row = features.new_zeros(rows, max(counts), *features.shape[1:])
        by_row_mask = mask.new_zeros(rows, max(counts), *mask.shape[1:])
        start = 0
        for row, count in enumerate(counts):
            by_row[row, :count] = features[start : start + count]
            by_row_mask[row, :count] = mask[start : start + count]
            start += count
        return {"input_features": by_row, "input_features_mask": by_row_mask}

    def model_audio(self, audio):
        windows = audio["input_features_mask"].flatten(0, 1)
        real = windows.any(-1)
        return {"input_features": audio["input_features"].flatten(0, 1)[real], "input_features_mask": windows[real]}

    def audio_token_counts(self, audio):
        # The encoder hears each window alone, and the row's tokens are its windows' outputs; an empty window has none.
        return whisper_encoder_lengths(audio["input_features_mask"].sum(-1)).sum(-1)

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


def windows_of(samples: int) -> int:
    """How many windows the processor cuts a clip of `samples` into (AudioFlamingo3Processor._process_audio)."""
    return min(max(1, -(-samples // WINDOW_SAMPLES)), MAX_WINDOWS)


AUDIO_FLAMINGO_3 = AudioFlamingo3Family(
    name="audio-flamingo-3",
    title="Audio Flamingo 3",
    model_types=("audioflamingo3",),
    audio_keys=("input_features", "input_features_mask"),
    # Its processor splits a clip into 30 s windows, each encoded alone, all placed in the prompt: up to 20 windows.
    heard_seconds=600.0,
    audio_tokens_per_second=25.0,
    keep_unquantized=("model.audio_tower", "model.multi_modal_projector", "lm_head"),
    audio_encoder=("model.audio_tower",),
    audio_projector=("model.multi_modal_projector",),
    unused_by_audio=(),
    lora_target_modules=LANGUAGE_MODEL_LINEAR_LAYERS,
    lora_target_parameters=(),
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
