"""The R1-AQA browser demo and Hugging Face Space: ask a multiple-choice question about a clip, and watch the answer
being written; optionally two models side by side. The app lives in `aqa/app/`; this file is its entry point.

    python app.py                                   # mispeech/r1-aqa, bf16 on the GPU (fp32 on CPU), 127.0.0.1:7860
    python app.py --model tiny-model --port 7861    # any path or hub id `aqa` accepts (`aqa tiny tiny-model`)
    python app.py --compare Qwen/Qwen2-Audio-7B-Instruct   # R1-AQA and the model it was trained from, side by side
    AQA_MODEL=tiny-model GRADIO_SERVER_PORT=7861 python app.py   # the same, from the environment (Spaces)
"""

import sys

from aqa.app import slot  # noqa: F401  first: it imports `spaces` (ZeroGPU), which wants importing before torch
from aqa.app.launching import demo_from_environment, main


def __getattr__(name: str):
    """`app.demo`, for tools that import the app and look for it (Gradio's reload mode): the app as the environment
    configures it, its models loaded on first use, since importing this module must load nothing."""
    if name == "demo":
        return demo_from_environment()
    raise AttributeError(f"module 'app' has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())
