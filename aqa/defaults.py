"""Defaults the CLI needs before torch and transformers are imported (importing those takes seconds)."""

DEFAULT_MODEL = "mispeech/r1-aqa"
PRECISIONS = ("bf16", "fp16", "fp32", "4bit", "8bit")
