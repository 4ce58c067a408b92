"""Defaults the CLI needs before torch and transformers are imported (importing those takes seconds)."""

DEFAULT_MODEL = "mispeech/r1-aqa"
PRECISIONS = ("bf16", "fp16", "fp32", "4bit", "8bit")
# The model families (aqa.families), by their --family names; the first is the default.
FAMILY_NAMES = ("qwen2-audio", "qwen2.5-omni", "qwen3-omni", "audio-flamingo-3")
