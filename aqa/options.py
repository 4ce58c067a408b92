"""What a caller passes in and gets back: typed, frozen, and free of torch, so that the CLI can build and check them
before the seconds that importing torch takes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from aqa.audio import AudioInput
from aqa.defaults import DEFAULT_MODEL, FAMILY_NAMES
from aqa.errors import InputError
from aqa.limits import Limits
from aqa.prompt import is_text, question_problems

ANSWER_TOKENS = 256  # default generation budget in answer mode (R1-AQA's evaluation setting)
THINK_TOKENS = 1024  # thinking mode writes its reasoning first


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load and how: what the model flags of every command (and the app) stand for."""

    name: str = DEFAULT_MODEL  # hub id or local checkpoint directory
    precision: str | None = None  # one of PRECISIONS; None: bf16 on a GPU, fp32 on the CPU
    device: str | None = None  # "cuda", "cuda:1", "cpu"; None: the GPU if there is one
    embeddings_on_cpu: bool | None = None  # input embedding table in CPU memory; None: only in 4/8-bit on a GPU
    random_weights: str | None = None  # "tiny" or "full": ignore `name`, build that architecture (benchmarks)
    family: str = FAMILY_NAMES[0]  # the family whose architecture `random_weights` builds (a checkpoint has its own)
    compile: bool | None = None  # decode under torch.compile with a static cache; None: where faster (GPU, bf16/fp16)


@dataclass(frozen=True)
class DecodingOptions:
    think: bool = False  # ask for <think> reasoning before the answer (the paper's prompt 3, not the released setup)
    max_new_tokens: int | None = None  # None: 256 in answer mode, 1024 in thinking mode
    sample: bool = False  # False: greedy; True: sample with the checkpoint's generation config
    generate: bool = True  # False: write no text and answer from the option probabilities alone
    score: bool = True  # compute every option's probability (needed for the fallback answer)
    seed: int | None = None  # sampling is seeded per batch from this and the batch's questions (same seed, same text)
    long_audio: str = "first"  # a clip over 30 s: "first" (its first 30 s, with a note) or "windows" (aqa.windows)

    @property
    def token_budget(self) -> int:
        return self.max_new_tokens or (THINK_TOKENS if self.think else ANSWER_TOKENS)


@dataclass(frozen=True)
class Question:
    audio: AudioInput  # a path, a (sample_rate, array) pair, or a 16 kHz float array
    text: str  # the question itself
    options: tuple[str, ...]
    name: str = ""  # shown in notes and errors; the file name by default
    allow_duplicate_options: bool = False  # ask a benchmark item that repeats an option verbatim (MMAU has some)
    channel: str = "mix"  # how a multi-channel clip becomes mono: "mix" (average) or "first" (R1-AQA's scripts)
    limits: Limits = Limits()  # caps on the question's size, checked with the rest of the question
    # What identifies the item wherever its files are (a benchmark id and the clip's path relative to its folder);
    # with the clip's base name, the question and the options it seeds sampling (aqa.answering.batch_seed).
    key: str = ""

    def __post_init__(self):
        # A question that is not text (a number, an object, options as a dict) is refused now, in one line: answering
        # measures and sorts questions before it checks them.
        if not is_text(self.text, self.options):
            raise InputError("; ".join(question_problems(self.text, self.options, True, self.limits)))
        object.__setattr__(self, "options", tuple(self.options))
        if not self.name:
            object.__setattr__(self, "name", str(self.audio) if isinstance(self.audio, (str, Path)) else "audio")


@dataclass(frozen=True)
class Timings:
    """Seconds per stage; in a batch, each stage's time divided by the batch size."""

    audio: float = 0.0  # decode and resample
    features: float = 0.0  # chat template, tokenizer, log-mel features
    generation: float = 0.0  # shared prefill (audio encoder + prompt) and decoding
    scoring: float = 0.0  # option probabilities from the shared prefill

    @property
    def total(self) -> float:
        return self.audio + self.features + self.generation + self.scoring


@dataclass(frozen=True)
class Window:
    """One window's answer, for a clip answered window by window."""

    start: float  # seconds into the clip
    end: float
    answer: str | None
    answer_source: str
    probabilities: dict[str, float]
    raw: str


@dataclass(frozen=True)
class Result:
    answer: str | None  # the chosen option: the one the text names, else the most probable one
    answer_source: str  # "text" (the generated text names it), "probabilities" (fallback) or "none"
    raw: str  # the generated text, special tokens removed ("" when generation was skipped)
    think: str | None  # the text inside <think>, in thinking mode
    probabilities: dict[str, float]  # option -> probability; sums to 1 over exactly the given options
    duration: float  # seconds of audio given
    note: str | None  # e.g. the clip was longer than the 30 s the model hears
    timings: Timings = field(default_factory=Timings)
    windows: tuple[Window, ...] = ()  # with long_audio="windows", a long clip's windows (the answer is their mean's)

    def to_dict(self) -> dict:
        """Plain JSON-able values: what `aqa ask --json`, `aqa batch`, evaluation files and the app's API give."""
        row = dataclasses.asdict(self)
        row["timings"]["total"] = self.timings.total
        return row
