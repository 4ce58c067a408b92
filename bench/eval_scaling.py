"""How an evaluation run scales with processes: `python -m bench.eval_scaling [--size full] [--processes 1 2]`.

Writes a random-weight checkpoint (the tiny one, or with `--size full` the full-size Qwen2-Audio-7B architecture in
bf16, saved once to a temporary folder so that each run loads it as it loads a real checkpoint) and MMAU-format
questions on the bench's synthetic clips, then runs `aqa mmau run` on them once per process count: one process
plainly, more under `torchrun --standalone`, every process on `--device` (default: each on its own GPU, or all on
`cuda:0` with `--device cuda:0`, which measures two processes sharing one GPU). For each: the wall seconds of the
whole command (start-up and model loading included), each process's answering seconds from the manifest, questions
per second, and whether the predictions equal the one-process run's (timings aside). On a 2-core CPU the figures mean
nothing but that the script works; on a GPU machine (issue 27):

    python -m bench.eval_scaling --size full --questions 1000 --processes 1 2 --device cuda:0 --output scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from aqa.bench import OPTIONS, QUESTION, describe_machine, write_clips
from aqa.random_weights import build_random_model, build_tiny_checkpoint

TASKS = ("sound", "music", "speech")


def write_checkpoint(size: str, folder: Path, device: torch.device) -> Path:
    """The tiny checkpoint, or the full-size architecture built on `device` in bf16 and saved."""
    if size == "tiny":
        return build_tiny_checkpoint(folder)
    model = build_random_model(size, "bf16", device)
    model.hf.save_pretrained(folder)
    model.processor.save_pretrained(folder)
    return folder


def write_questions(folder: Path, count: int, seconds: float) -> Path:
    """MMAU-format records on the bench's clips (the first option right), as `mmau.json` beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = write_clips(folder, count, seconds)
    records = [
        {
            "id": f"q{index:04d}",
            "audio_id": clip.name,
            "question": QUESTION,
            "choices": list(OPTIONS),
            "answer": OPTIONS[0],
            "task": TASKS[index % 3],
            "difficulty": "easy",
            "sub-category": "bench",
        }
        for index, clip in enumerate(clips)
    ]
    path = folder / "mmau.json"
    path.write_text(json.dumps(records))
    return path


def run_once(processes: int, model: Path, data: Path, output: Path, args: argparse.Namespace) -> dict:
    """One `aqa mmau run` with `processes` processes: its wall seconds and each process's session."""
    command = ["mmau", "run", "--model", str(model), "--data", str(data), "--audio-dir", str(data.parent)]
    command += ["--output", str(output), "--batch-size", str(args.batch_size)]
    command += ["--max-new-tokens", str(args.max_new_tokens)] + (["--device", args.device] if args.device else [])
    if processes == 1:
        launcher = [sys.executable, "-m", "aqa"]
    else:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        launcher += ["-m", "aqa"]
    start = time.perf_counter()
    done = subprocess.run([*launcher, *command], capture_output=True, text=True, env=os.environ)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
    sessions = json.loads(output.with_suffix(".manifest.json").read_text())["runs"]
    answering = [session.get("answer_seconds") or 0.0 for session in sessions]
    return {
        "processes": processes,
        "wall_seconds": round(wall, 2),
        "answer_seconds_per_process": answering,
        "questions_per_s_answering": round(args.questions / max(answering), 3) if max(answering) else None,
        "questions_per_s_wall": round(args.questions / wall, 3),
        "devices": sorted({session.get("device", "?") for session in sessions}),
    }


def comparable(path: Path) -> list[dict]:
    rows = json.loads(path.read_text())
    for row in rows:
        row.pop("timings", None)
    return rows


def measure(args: argparse.Namespace) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        model = write_checkpoint(args.size, folder / "model", device)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the runs load it again, in their own processes
        data = write_questions(folder / "data", args.questions, args.seconds)
        runs, first = [], None
        for processes in args.processes:
            output = folder / f"run-{processes}" / "preds.json"
            runs.append(run_once(processes, model, data, output, args))
            first = first or comparable(output)
            runs[-1]["same_predictions_as_the_first"] = comparable(output) == first
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    machine = describe_machine(device) | {"gpus": torch.cuda.device_count()}
    settings = {key: value for key, value in vars(args).items() if key != "output"}
    return {"machine": machine, "settings": settings, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny", help="the random checkpoint's size")
    parser.add_argument("--questions", type=int, default=16, help="questions (one synthetic clip each)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each clip")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="process counts to run, in order")
    parser.add_argument("--device", help="every process's --device (default: each its own GPU, or the CPU)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--output", type=Path, help="write the JSON report here (default: print it)")
    args = parser.parse_args()
    report = json.dumps(measure(args), indent=1)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
