"""Seconds per GRPO step and peak memory of a training recipe:
`python -m bench.grpo_step [--random-weights full] [--family NAME]`.

By default the tiny CPU recipe (train/recipes/grpo_tiny.yaml) on a fresh tiny checkpoint of the family (default
Qwen2-Audio). With `--random-weights full` (on a GPU) the family's one-GPU recipe (QLoRA, or LoRA for Qwen3-Omni,
whose 4-bit is refused; 8 generations per prompt: train/recipes/grpo_qlora_24gb.yaml for Qwen2-Audio, else
train/recipes/<family>/) on the family's full-size architecture with random weights, saved once to a temporary
folder so that the recipe loads it exactly as it loads a real checkpoint (an Omni family's thinker alone). Both train
on synthetic AVQA rows (the bench's 10 s clips) through `train.grpo.main`, one optimizer step per step (gradient
accumulation 1, which is all the memory one step needs), and report every step's seconds and peak memory: the first
step includes warm-up, so the median of the later ones is the figure.

    python -m bench.grpo_step --output grpo_tiny.json
    python -m bench.grpo_step --random-weights full --max-completion-length 16 --output grpo_full.json
    python -m bench.grpo_step --random-weights full --family qwen2.5-omni --output grpo_qwen2.5-omni.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

import train.grpo as grpo
from aqa.bench import OPTIONS, QUESTION, describe_machine, read_peak, reset_peak, write_clips
from aqa.families import FAMILIES, QWEN2_AUDIO, Family
from aqa.random_weights import build_random_model, build_tiny_checkpoint
from aqa.timing import synchronize

TINY_RECIPE = "train/recipes/grpo_tiny.yaml"
# Each family's one-GPU recipe
ONE_GPU_RECIPES = {
    "qwen2-audio": "train/recipes/grpo_qlora_24gb.yaml",
    "qwen2.5-omni": "train/recipes/qwen2.5-omni/grpo_qlora.yaml",
    "qwen3-omni": "train/recipes/qwen3-omni/grpo_lora.yaml",
    "audio-flamingo-3": "train/recipes/audio-flamingo-3/grpo_qlora.yaml",
}
assert tuple(ONE_GPU_RECIPES) == tuple(FAMILIES), "a one-GPU recipe per family"


def recipe_of(size: str, family: Family) -> str:
    return TINY_RECIPE if size == "tiny" else ONE_GPU_RECIPES[family.name]


class StepClock(TrainerCallback):
    """Wall time and peak memory of every optimizer step (generation, rewards, loss, backward, update)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.steps: list[dict[str, float]] = []
        self.start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        reset_peak(self.device)
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        synchronize(self.device)
        self.steps.append({"seconds": round(time.perf_counter() - self.start, 3), "peak_gib": read_peak(self.device)})


def write_rows(folder: Path, count: int, seconds: float) -> Path:
    """AVQA-format training rows on the bench's synthetic clips, the first option always right."""
    path = folder / "train.jsonl"
    rows = [
        {"id": index, "audio_path": str(clip), "question_text": QUESTION, "multi_choice": list(OPTIONS), "answer": 0}
        for index, clip in enumerate(write_clips(folder, count, seconds))
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_model(size: str, folder: Path, device: torch.device, family: Family = QWEN2_AUDIO) -> Path:
    if size == "tiny":
        return build_tiny_checkpoint(folder / "model", family=family)
    model = build_random_model(size, "bf16", device, family=family)
    model.hf.save_pretrained(folder / "model")
    model.processor.save_pretrained(folder / "model")
    del model
    torch.cuda.empty_cache()
    return folder / "model"


def measure(args: argparse.Namespace) -> dict:
    device = torch.device("cuda" if args.random_weights == "full" else "cpu")
    family = FAMILIES[args.family]
    recipe = recipe_of(args.random_weights, family)
    clock = StepClock(device)
    overrides = ["--max_steps", str(args.steps), "--gradient_accumulation_steps", "1", "--save_strategy", "no"]
    overrides += ["--merge_adapter", "false", "--report_to", "none"]
    if args.max_completion_length:
        overrides += ["--max_completion_length", str(args.max_completion_length)]

    original = grpo.AudioGRPOTrainer

    class TimedTrainer(original):  # the recipe's own trainer, with the clock attached
        def __init__(self, *positional, **keywords):
            super().__init__(*positional, **keywords)
            self.add_callback(clock)

    grpo.AudioGRPOTrainer = TimedTrainer
    try:
        with tempfile.TemporaryDirectory(prefix="grpo-step-") as folder:
            model_dir = write_model(args.random_weights, Path(folder), device, family)
            paths = ["--model_name_or_path", str(model_dir), "--train_file", str(write_rows(Path(folder), 4, 10.0))]
            paths += ["--output_dir", f"{folder}/run"]
            grpo.main(["--config", recipe, *paths, *overrides])
    finally:
        grpo.AudioGRPOTrainer = original
    later = clock.steps[1:] or clock.steps
    return {
        "machine": describe_machine(device),
        "recipe": {"file": recipe, "model": args.random_weights, "family": family.name, "overrides": overrides},
        "grpo_steps": clock.steps,
        "grpo_seconds_per_step": statistics.median(step["seconds"] for step in later),
        "grpo_peak_memory_gib": max(step["peak_gib"] for step in clock.steps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random-weights", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--family", choices=list(FAMILIES), default=QWEN2_AUDIO.name)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--max-completion-length", type=int, help="default: the recipe's")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--output", help="write the JSON report here too")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report = measure(args)
    text = json.dumps(report, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
