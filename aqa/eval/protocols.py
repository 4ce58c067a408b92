"""Evaluation protocols: how a benchmark's questions are asked and their predictions extracted, named so that every
number says which one it came from.

- `greedy` (the default): deterministic greedy decoding, channels mixed, batches grouped by length, the prediction
  read with aqa's shared `<answer>` extraction.
- `r1-aqa`: R1-AQA's MMAU test script, exactly (github.com/xiaomi-research/r1-aqa, src/test_mmau.py and
  test_mmau.sh): the first channel of each clip, `generate(**inputs, max_new_tokens=256)` with nothing else (so the
  checkpoint's own generation config applies: Qwen2-Audio-7B-Instruct's samples), batches of 32 in file order, and
  the prediction as that script extracts it. Its 64.50 on MMAU is one such sampled, unseeded draw; `--seed` makes a
  draw repeatable and `--runs` shows how far draws spread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aqa.options import ANSWER_TOKENS, DecodingOptions
from aqa.parsing import extract_answer, extract_r1_aqa_answer


def aqa_prediction(raw: str) -> str:
    """The text of the first <answer> tag (across lines too), or the whole output when there is none, stripped."""
    extracted = extract_answer(raw)
    return extracted if extracted is not None else raw.strip()


@dataclass(frozen=True)
class Protocol:
    name: str
    channel: str  # how a stereo clip becomes mono: "mix" or "first"
    keep_order: bool  # batches in file order (True) or grouped by length
    extract: Callable[[str], str]  # the raw output -> the prediction the official scorer reads
    decoding: DecodingOptions | None = None  # fixed decoding (None: the command's --think/--sample/--max-new-tokens)
    batch_size: int | None = None  # the protocol's batch size when --batch-size is not given (None: 8)

    def label(self) -> str:
        return f"{self.name} protocol"


PROTOCOLS = {
    "greedy": Protocol("greedy", channel="mix", keep_order=False, extract=aqa_prediction),
    "r1-aqa": Protocol(
        "r1-aqa",
        channel="first",
        keep_order=True,
        extract=extract_r1_aqa_answer,
        decoding=DecodingOptions(sample=True, max_new_tokens=ANSWER_TOKENS),
        batch_size=32,
    ),
}
