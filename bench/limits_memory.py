"""What the largest question the caps allow costs: peak memory and time of one answer at aqa.limits' defaults.

Each case runs in a fresh process (peak RSS is a high-water mark): the model loaded, then one answer about a 30 s
clip. "Largest" fills every cap at once: the most options, each of the most characters, and a question as long as the
prompt-token cap then allows (one token per byte: the bound itself, and exactly what the tiny checkpoint's byte-level
tokenizer makes). On a GPU the CUDA peak is reported too. The last case is a refusal: `aqa ask` with a 20,000-character
option, which must end before any model is loaded.

In thinking mode the options are scored after the model's reasoning, which is run once per question and shared by
its options, so the largest question costs about what the caps and the 1024-token budget allow.

    python -m aqa tiny /tmp/tiny-model
    python -m bench.limits_memory --model /tmp/tiny-model            # a Markdown table; --json for JSON
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from aqa.limits import Limits, prompt_tokens_bound
from aqa.prompt import build_prompt, question_problems

CASES = {
    "typical": "a typical question (70 characters, 4 one-word options), answer mode",
    "largest": "the largest allowed question (10 options of 300 characters), answer mode (the released model's)",
    "typical-think": "a typical question, thinking mode, 1024 new tokens",
    "largest-think": "the largest allowed question, thinking mode, 1024 new tokens",
}
ROOT = Path(__file__).resolve().parent.parent


def largest_question(limits: Limits = Limits()) -> tuple[str, list[str]]:
    """A question and options that meet every cap, as large as they can be together."""
    options = [f"{number} " + "x" * (limits.option_chars - len(f"{number} ")) for number in range(limits.options)]
    while True:
        spare = limits.prompt_tokens - prompt_tokens_bound(build_prompt("", options, think=True))
        if spare >= 1:
            break
        options = [option[:-1] for option in options]  # shorten them all a little until a question fits
    question = "What is it? " + "q" * (min(spare, limits.question_chars) - len("What is it? "))
    assert question_problems(question, options) == [], question_problems(question, options)
    return question, options


def measure(model: str, case: str) -> dict:
    """One answer in this process; the caller starts a fresh one per case."""
    import torch

    import aqa

    loaded = aqa.load_model(model, precision="fp32" if not torch.cuda.is_available() else None)
    clip = (0.1 * np.sin(np.arange(30 * aqa.SAMPLE_RATE) / 20)).astype(np.float32)
    if case.startswith("typical"):
        question, options = "Based on the given audio, identify the source of the speaking voice.", ["Man", "Woman"]
        options += ["Child", "Robot"]
    else:
        question, options = largest_question()
    think = case.endswith("think")
    decoding = aqa.DecodingOptions(think=think, max_new_tokens=1024 if think else 8)
    start = time.perf_counter()
    result = aqa.answer(loaded, clip, question, options, decoding)
    seconds = time.perf_counter() - start
    report = {
        "case": case,
        "prompt_tokens_bound": prompt_tokens_bound(build_prompt(question, options, decoding.think)),
        "raw_output_characters": len(result.raw),
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }
    if torch.cuda.is_available():
        report["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return report


def peak_rss_mib() -> float:
    """This process's peak resident memory (Linux VmHWM), in MiB."""
    with open("/proc/self/status") as handle:
        fields = dict(line.split(":", 1) for line in handle)
    return int(fields["VmHWM"].split()[0]) / 1024


def measure_refusal(model: str) -> dict:
    """`aqa ask` with a 20,000-character option: seconds to the one-line error, and the peak RSS of the command."""
    clip = Path(tempfile.mkdtemp()) / "tone.wav"
    import soundfile

    soundfile.write(clip, np.zeros(16000, dtype=np.float32), 16000)
    ask = [sys.executable, "-m", "aqa", "ask", "--model", model, "--audio", str(clip), "--question", "Q?"]
    ask += ["--options", "Man", "x" * 20_000]
    # Started from this small process, so that the peak RSS reported is the command's own.
    wrapper = "import os,subprocess,sys;p=subprocess.Popen(sys.argv[1:]);_,s,u=os.wait4(p.pid,0);print(u.ru_maxrss)"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper, *ask], capture_output=True, text=True, cwd=ROOT)
    return {
        "case": "refused",
        "message": done.stderr.strip(),
        "seconds": round(time.perf_counter() - start, 2),
        "peak_rss_mib": round(int(done.stdout.strip()) / 1024, 1),
    }


def format_table(rows: list[dict]) -> str:
    lines = ["| case | prompt tokens (bound) | peak RSS (MiB) | seconds |", "| --- | --- | --- | --- |"]
    for row in rows:
        what = CASES.get(row["case"], f"refused by `aqa ask`: {row.get('message', '')}")
        cuda = f" (CUDA {row['peak_cuda_mib']})" if "peak_cuda_mib" in row else ""
        tokens = row.get("prompt_tokens_bound", "-")
        lines.append(f"| {what} | {tokens} | {row['peak_rss_mib']}{cuda} | {row['seconds']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint directory or hub id")
    parser.add_argument("--case", choices=CASES, help="measure this one case in this process (used internally)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(measure(args.model, args.case)))
        return 0
    rows = []
    for case in CASES:
        command = [sys.executable, "-m", "bench.limits_memory", "--model", args.model, "--case", case]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    rows.append(measure_refusal(args.model))
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
