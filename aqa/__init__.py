"""Audio question answering with R1-AQA (Qwen2-Audio post-trained with GRPO).

    import aqa
    model = aqa.load_model()  # mispeech/r1-aqa, bf16 on the GPU, fp32 on the CPU
    result = aqa.answer(model, "clip.wav", "What is the source of the sound?", ["Dog", "Cat", "Car", "Rain"])
    result.answer, result.probabilities

Names are imported on first use (PEP 562), so `import aqa` and the CLI's `--help` do not wait for torch.
"""

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"  # the package's version (pyproject.toml reads it from here)

_EXPORTS = {
    "extract_answer": "aqa.parsing",
    "parse_answer": "aqa.parsing",
    "SAMPLE_RATE": "aqa.audio",
    "load_audio": "aqa.audio",
    "DecodingOptions": "aqa.options",
    "ModelSpec": "aqa.options",
    "Question": "aqa.options",
    "Result": "aqa.options",
    "Timings": "aqa.options",
    "answer": "aqa.answering",
    "answer_many": "aqa.answering",
    "answer_stream": "aqa.streaming",
    "DEFAULT_MODEL": "aqa.defaults",
    "AQAError": "aqa.errors",
    "AudioError": "aqa.errors",
    "InputError": "aqa.errors",
    "ModelError": "aqa.errors",
    "AQAModel": "aqa.model",
    "load_model": "aqa.loading",
    "build_messages": "aqa.prompt",
    "build_prompt": "aqa.prompt",
}
__all__ = [
    "AQAError",
    "AQAModel",
    "AudioError",
    "DEFAULT_MODEL",
    "DecodingOptions",
    "InputError",
    "ModelError",
    "ModelSpec",
    "Question",
    "Result",
    "SAMPLE_RATE",
    "Timings",
    "answer",
    "answer_many",
    "answer_stream",
    "build_messages",
    "build_prompt",
    "extract_answer",
    "load_audio",
    "load_model",
    "parse_answer",
]

if TYPE_CHECKING:
    from aqa.answering import answer, answer_many
    from aqa.audio import SAMPLE_RATE, load_audio
    from aqa.defaults import DEFAULT_MODEL
    from aqa.errors import AQAError, AudioError, InputError, ModelError
    from aqa.loading import load_model
    from aqa.model import AQAModel
    from aqa.options import DecodingOptions, ModelSpec, Question, Result, Timings
    from aqa.parsing import extract_answer, parse_answer
    from aqa.prompt import build_messages, build_prompt
    from aqa.streaming import answer_stream


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'aqa' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return __all__
