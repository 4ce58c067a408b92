"""Seconds per GRPO step and peak memory of a training recipe: `python -m bench.grpo_step [--random-weights full]`.

By default the tiny CPU recipe (train/recipes/grpo_tiny.yaml) on a fresh tiny checkpoint. With `--random-weights
full` (on a GPU) the one-GPU recipe (train/recipes/grpo_qlora_24gb.yaml: QLoRA, 8 generations per prompt) on the
full-size Qwen2-Audio-7B architecture with random weights, saved once to a temporary folder so that the recipe loads
it exactly as it loads a real checkpoint. Both train on synthetic AVQA rows (the bench's 10 s clips) through
`train.grpo.main`, one optimizer step per step (gradient accumulation 1, which is all the memory one step needs),
and report every step's seconds and peak memory: the first step includes warm-up, so the median of the later ones
is the figure.

    python -m bench.grpo_step --output grpo_tiny.json
    python -m bench.grpo_step --random-weights full --max-completion-length 16 --output grpo_full.json
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
from aqa.random_weights import build_random_model, build_tiny_checkpoint
from aqa.timing import synchronize

RECIPES = {"tiny": "train/recipes/grpo_tiny.yaml", "full": "train/recipes/grpo_qlora_24gb.yaml"}


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


def write_model(size: str, folder: Path, device: torch.device) -> Path:
    if size == "tiny":
        return build_tiny_checkpoint(folder / "model")
    model = build_random_model(size, "bf16", device)
    model.hf.save_pretrained(folder / "model")
    model.processor.save_pretrained(folder / "model")
    del model
    torch.cuda.empty_cache()
    return folder / "model"


def measure(args: argparse.Namespace) -> dict:
    device = torch.device("cuda" if args.random_weights == "full" else "cpu")
    clock = StepClock(device)
    overrides = ["--max_steps", str(args.steps), "--gradient_accumulation_steps", "1", "--save_strategy", "no"]
    overrides += ["--merge_adapter", "false", "--report_to", "none"]
    if args.max_completion_length:
        overrides += ["--max_completion_length", str(args.max_completion_length)]

    class TimedTrainer(grpo.AudioGRPOTrainer):  # the recipe's own trainer, with the clock attached
        def __init__(self, *positional, **keywords):
            super().__init__(*positional, **keywords)
            self.add_callback(clock)

    grpo.AudioGRPOTrainer = TimedTrainer
    with tempfile.TemporaryDirectory(prefix="grpo-step-") as folder:
        model_dir = write_model(args.random_weights, Path(folder), device)
        paths = ["--model_name_or_path", str(model_dir), "--train_file", str(write_rows(Path(folder), 4, 10.0))]
        paths += ["--output_dir", f"{folder}/run"]
        grpo.main(["--config", RECIPES[args.random_weights], *paths, *overrides])
    later = clock.steps[1:] or clock.steps
    return {
        "machine": describe_machine(device),
        "recipe": {"file": RECIPES[args.random_weights], "model": args.random_weights, "overrides": overrides},
        "grpo_steps": clock.steps,
        "grpo_seconds_per_step": statistics.median(step["seconds"] for step in later),
        "grpo_peak_memory_gib": max(step["peak_gib"] for step in clock.steps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random-weights", choices=sorted(RECIPES), default="tiny")
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
