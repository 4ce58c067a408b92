"""Audio question answering with R1-AQA (Qwen2-Audio post-trained with GRPO).

import aqa
model = aqa.load_model()  # mispeech/r1-aqa, bf16 on the GPU, fp32 on the CPU
result = aqa.answer(model, "clip.wav", "What is the source of the sound?", ["Dog", "Cat", "Car", "Rain"])
result.answer, result.probabilities
"""

from aqa.answer import extract_answer, parse_answer
from aqa.audio import SAMPLE_RATE, load_audio
from aqa.decoding import DecodingOptions, Question, Result, Timings, answer, answer_many
from aqa.errors import AQAError, AudioError, InputError, ModelError
from aqa.model import DEFAULT_MODEL, AQAModel, load_model
from aqa.prompt import build_messages, build_prompt

__all__ = [
    "AQAError",
    "AQAModel",
    "AudioError",
    "DEFAULT_MODEL",
    "DecodingOptions",
    "InputError",
    "ModelError",
    "Question",
    "Result",
    "SAMPLE_RATE",
    "Timings",
    "answer",
    "answer_many",
    "build_messages",
    "build_prompt",
    "extract_answer",
    "load_audio",
    "load_model",
    "parse_answer",
]
