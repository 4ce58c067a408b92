"""Typed configs for training: TRL's own dataclasses, extended for audio, parsed from a YAML recipe plus the CLI.

`parse_config` reads `--config recipe.yaml` and lets every field be overridden on the command line (TrlParser), so
`--learning_rate 1e-6 --beta 0.001` beats the recipe. The resolved values are logged once by `log_config`.

Reusable by SFT: `DataArguments` (which rows, which prompt), `AudioModelConfig` (which checkpoint, precision, LoRA
on the language model only, frozen audio encoder), `parse_config` and `log_config`. Every model family (aqa.families)
trains with the same options: what differs (module names, LoRA targets) is asked of its family.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trl import GRPOConfig, ModelConfig, TrlParser

from aqa.audio import CHANNELS
from aqa.errors import InputError, first_line
from train.data import DataOptions

logger = logging.getLogger(__name__)

BASE_MODEL = "Qwen/Qwen2-Audio-7B-Instruct"  # what R1-AQA was trained from


@dataclass
class DataArguments:
    """Which training rows and which prompt."""

    train_file: str | None = field(
        default=None,
        metadata={
            "help": "JSONL of AVQA rows (audio_path, question_text, multi_choice, answer index) or MMAU-style "
            "rows (audio/audio_id, question, choices, answer text); relative audio paths are read from the "
            "file's folder. Rows with missing/corrupt audio or an answer not among the choices are skipped."
        },
    )
    drop_view: bool = field(
        default=False,
        metadata={"help": "Drop AVQA rows whose question_relation is 'View' (unanswerable from audio alone)."},
    )
    video_to_audio: bool = field(
        default=False,
        metadata={
            "help": "Rewrite 'video' to 'audio' in questions as R1-AQA's training did on AVQA: a case-sensitive "
            "substring replace ('videos' -> 'audios', 'Video' untouched)."
        },
    )
    audio_channel: str = field(
        default="first",
        metadata={
            "help": "How a multi-channel clip becomes mono: 'first' keeps its first channel, as R1-AQA's data "
            "loader did (waveform[0]); 'mix' averages the channels, as `aqa` does at inference."
        },
    )
    check_audio: bool = field(
        default=True,
        metadata={"help": "Decode every clip once before training so that a bad file is skipped, not a crash."},
    )
    think: bool = field(
        default=False,
        metadata={"help": "Ask for <think> reasoning before the answer (paper's prompt 3; not the released model)."},
    )

    eval_file: str | None = field(
        default=None,
        metadata={
            "help": "Questions answered during training (AVQA rows or an MMAU-format file), with aqa's greedy "
            "answering; accuracy by MMAU's official rule and the strict one is logged as eval_accuracy and "
            "eval_strict_accuracy every --eval_steps (default: every --save_steps)."
        },
    )
    eval_audio_dir: str | None = field(
        default=None,
        metadata={"help": "The folder the eval file's audio paths are relative to (default: the file's folder)."},
    )

    def __post_init__(self):
        if self.audio_channel not in CHANNELS:  # a ValueError here is one line to the user (see parse_config)
            raise ValueError(f"--audio_channel must be one of {', '.join(CHANNELS)}, not {self.audio_channel!r}")

    def data_options(self) -> DataOptions:
        return DataOptions(
            drop_view=self.drop_view,
            video_to_audio=self.video_to_audio,
            check_audio=self.check_audio,
            audio_channel=self.audio_channel,
        )


@dataclass
class AudioModelConfig(ModelConfig):
    """TRL's ModelConfig (checkpoint, dtype, LoRA, 4/8-bit) with R1-AQA's base model and an encoder switch."""

    model_name_or_path: str | None = field(
        default=BASE_MODEL,
        metadata={
            "help": "Hub id or local directory of a checkpoint of any supported family (Qwen2-Audio, Qwen2.5-Omni, "
            "Qwen3-Omni, Audio Flamingo 3; `python -m aqa models`): an Omni checkpoint's thinker is trained."
        },
    )
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "LoRA target modules: one regex (full match) or module names. By default the model family's: "
            "every linear layer of the language model (for Qwen3-Omni its attention projections) and nothing in "
            "the audio or vision encoder."
        },
    )
    lora_target_parameters: list[str] | None = field(
        default=None,
        metadata={
            "help": "LoRA on parameters that are no layer (PEFT's target_parameters), by name suffix. By default "
            "the family's: Qwen3-Omni's fused experts (mlp.experts.gate_up_proj, mlp.experts.down_proj), none for "
            "the others; 'none' for none."
        },
    )
    freeze_audio_encoder: bool = field(
        default=False,
        metadata={
            "help": "Freeze the audio encoder (model.audio_tower in every family) except its projection into the "
            "language model; the projector and language model still train. No effect with LoRA, which trains only "
            "its adapters."
        },
    )


@dataclass
class SaveArguments:
    """How a LoRA run is saved; mixed into GRPO's and SFT's configs."""

    merge_adapter: bool = field(
        default=True,
        metadata={
            "help": "With LoRA, also write the merged full model to output_dir (the adapter goes to "
            "output_dir/adapter), so that `aqa ask --model OUTPUT_DIR` loads it."
        },
    )


@dataclass
class AudioGRPOConfig(GRPOConfig, SaveArguments):
    """TRL's GRPOConfig plus the rewards to train on and how a LoRA run is saved.

    The defaults that decide what is optimised are R1-AQA's trainer's (xiaomi-research/r1-aqa, a fork of trl 0.15.2
    run under transformers 4.49), where TRL 1.16's differ: its loss (no importance weight on the KL term, the mean
    over each completion's tokens then over completions, beta 0.04) and its rollout sampling (top_k 50 and top_p 1.0,
    transformers 4.49's defaults under `GenerationConfig(do_sample=True, temperature=1.0)`; TRL 1.16 passes top_k 0).
    """

    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy_reward", "format_reward"],
        metadata={"help": "Reward functions by name (train/rewards.py); each is logged as rewards/<name>/mean."},
    )
    beta: float = field(default=0.04, metadata={"help": "KL coefficient (R1-AQA's 0.04; TRL 1.16's default is 0)."})
    loss_type: str = field(
        default="grpo",
        metadata={"help": "'grpo' (R1-AQA's): mean over each completion's tokens, then over completions."},
    )
    use_bias_correction_kl: bool = field(
        default=False,
        metadata={
            "help": "Multiply the per-token KL by the importance ratio (TRL 1.16's default). R1-AQA's loss does not: "
            "the ratio is 1 on-policy, but it adds a gradient term whenever beta != 0."
        },
    )
    top_k: int = field(default=50, metadata={"help": "Rollout top-k (R1-AQA's 50; 0 disables the filter)."})
    max_completion_length: int | None = field(
        default=256, metadata={"help": "Tokens generated per completion at most (R1-AQA's 256)."}
    )


def parse_config(dataclass_types: Sequence[type], args: Sequence[str] | None = None) -> tuple:
    """Instances of `dataclass_types` from `--config recipe.yaml` and command-line overrides (CLI wins).

    The configs check their settings as they are built (bf16 on a machine without it, conflicting strategies ...)
    and raise ValueError: that is the user's to fix, so it becomes a one-line InputError."""
    try:
        return TrlParser(list(dataclass_types)).parse_args_and_config(args=args)
    except ValueError as error:
        raise InputError(f"bad training settings: {first_line(error)}") from None


def resolved_config(*configs) -> dict:
    """Every field of every config, as plain JSON-able values, keyed by config class."""
    resolved = {}
    for config in configs:
        values = config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config)
        resolved[type(config).__name__] = json.loads(json.dumps(values, default=str))
    return resolved


def log_config(*configs, path: str | Path | None = None) -> None:
    """Log the resolved configuration once (and write it to `path`, for the run's records)."""
    text = json.dumps(resolved_config(*configs), indent=2, sort_keys=True)
    logger.info("resolved configuration:\n%s", text)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n", encoding="utf-8")
