"""`aqa bench`: speed and memory of answering, stage by stage, against the model card's recipe in the same run.

    python -m aqa tiny tiny-model && python -m aqa bench --model tiny-model --max-new-tokens 10  # CPU
    python -m aqa bench --random-weights full --precision bf16 --json  # GPU, Qwen2-Audio-7B shapes

Every figure comes from synthetic clips (noise and tones written at 44.1 kHz, so resampling is real work) answered
on the loaded model; nothing is estimated. `--random-weights full` builds the full-size architecture with random
weights directly on the device, so speed and memory are those of R1-AQA without downloading it. Random weights
never emit the end token, so they decode exactly `--max-new-tokens` tokens (10 by default: R1-AQA's answers,
`<answer>Man</answer>` and the end token, take about that many).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from aqa.answering import answer_many
from aqa.audio import CHUNK_LENGTH, SAMPLE_RATE, load_audio
from aqa.errors import AQAError
from aqa.generation import exactly, generate_text, generate_tokens, generation_config
from aqa.inputs import Prepared, build_inputs, prepare, prepare_batch, to_device
from aqa.loading import load
from aqa.model import AQAModel, HostEmbedding, choose_decoder, default_device
from aqa.options import ANSWER_TOKENS, DecodingOptions, ModelSpec, Question
from aqa.parsing import extract_answer
from aqa.prefill import crop, prefill
from aqa.prompt import build_messages
from aqa.scoring import continuation_logprobs, score_options
from aqa.timing import Clock

CLIP_RATE = 44100  # the synthetic clips' sample rate: CD audio, so every clip is really resampled to 16 kHz
QUESTION = "What is the source of the sound?"
OPTIONS = ("Dog barking", "Car engine", "Rain", "Human speech")
GIB = 2**30
RANDOM_ANSWER_TOKENS = 10  # tokens decoded per question with random weights, which never stop by themselves


@dataclass(frozen=True)
class BenchOptions:
    clips: int = 32  # synthetic questions answered at every batch size
    seconds: float = 10.0  # length of each synthetic clip
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    latency_runs: int = 5  # questions timed one at a time, stage by stage (median reported)
    baseline_runs: int = 8  # questions answered one at a time with the model card's recipe
    max_new_tokens: int | None = None  # None: the model's own stop (at most 256); 10 with random weights
    decode_tokens: int = 64  # tokens generated when timing the decode step (0: skip that part)
    think_tokens: int = 300  # the length of the thinking answer timed on each decoding path (0: skip it)


def measure(spec: ModelSpec, options: BenchOptions, threads: int | None = None) -> dict:
    """Every figure of the report, in one process: load, warm up, then each measurement in turn."""
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(spec.device) if spec.device else default_device()
    with tempfile.TemporaryDirectory(prefix="aqa-bench-") as folder:
        count = max(options.clips, options.latency_runs, options.baseline_runs)
        questions = [Question(path, QUESTION, OPTIONS) for path in write_clips(Path(folder), count, options.seconds)]
        reset_peak(device)
        start = time.perf_counter()
        model = load(spec)
        load_seconds, load_peak = time.perf_counter() - start, read_peak(device)
        say(f"loaded {model.name} ({model.precision}, {device}) in {load_seconds:.1f} s; warming up")
        decoding = DecodingOptions(max_new_tokens=options.max_new_tokens)
        largest = max(options.batch_sizes)
        list(answer_many(model, questions[:largest], decoding, largest))
        memory = PeakMemory(device)
        report = {"machine": describe_machine(device), "model": describe_model(model, load_seconds, spec, options)}
        report |= measure_one_at_a_time(model, questions, decoding, options, memory)
        report |= measure_throughput(model, questions[: options.clips], decoding, options.batch_sizes, memory)
        report["speedup_vs_baseline"] = speedups(report)
        report["speedup_vs_alternatives"] = alternatives(report)
        report["peak_memory_gib"] = {"kind": peak_kind(device), "load": load_peak, **memory.peaks}
        report["audio_and_features_30s_ms"] = measure_features(model, Path(folder))
        if options.decode_tokens:
            report |= measure_decoding(model, questions, options, memory)
    return report


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# --- synthetic clips ----------------------------------------------------------------------------------------------


def write_clips(folder: Path, count: int, seconds: float) -> list[Path]:
    """`count` different clips: a tone (a different pitch each) over noise, written as 44.1 kHz 16-bit WAV."""
    rng = np.random.default_rng(0)
    time_axis = np.arange(int(seconds * CLIP_RATE)) / CLIP_RATE
    paths = []
    for index in range(count):
        tone = 0.3 * np.sin(2 * np.pi * (110 + 37 * index) * time_axis)
        samples = (tone + 0.05 * rng.standard_normal(time_axis.size)).astype(np.float32)
        path = folder / f"clip_{index:04d}.wav"
        sf.write(path, samples, CLIP_RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def describe_model(model: AQAModel, load_seconds: float, spec: ModelSpec, options: BenchOptions) -> dict:
    return {
        "name": model.name,
        "family": model.family.name,
        "precision": model.precision,
        "device": str(model.device),
        "random_weights": spec.random_weights,
        "embeddings_on_cpu": isinstance(model.hf.get_input_embeddings(), HostEmbedding),
        "parameters": count_weights(model.hf),
        "load_seconds": round(load_seconds, 3),
        "clips": options.clips,
        "clip_seconds": options.seconds,
        "clip_sample_rate": CLIP_RATE,
        "options_per_question": len(OPTIONS),
        "max_new_tokens": options.max_new_tokens,
    }


def count_weights(model: nn.Module) -> int:
    """Parameters as the architecture has them: a 4-bit tensor packs two in a byte, so count its original shape."""
    total = 0
    for parameter in model.parameters():
        state = getattr(parameter, "quant_state", None)
        total += state.shape.numel() if state is not None else parameter.numel()
    return total


def describe_machine(device: torch.device) -> dict:
    import transformers

    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# --- memory -------------------------------------------------------------------------------------------------------


def peak_kind(device: torch.device) -> str:
    return "cuda_max_allocated" if device.type == "cuda" else "cpu_rss_high_water"


def reset_peak(device: torch.device) -> None:
    """Restart the high-water mark: CUDA's allocator statistics, or the kernel's peak RSS (Linux clear_refs)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux: the peak then covers the whole process so far, which the report's kind names
        pass


def read_peak(device: torch.device) -> float:
    """GiB at the high-water mark since the last reset_peak."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / GIB, 3)
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) * 1024 / GIB, 3)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 3)


# --- latency ------------------------------------------------------------------------------------------------------


def measure_one_at_a_time(
    model: AQAModel, questions: Sequence[Question], decoding: DecodingOptions, options: BenchOptions, memory
) -> dict:
    """One question at a time, every measurement of a question before the next question, so that a change in the
    machine's load (other work on a shared machine) hits all of them alike: the stages, whole answers in each mode,
    unshared scoring and the baseline recipe. Medians over the questions."""
    runs = max(options.latency_runs, options.baseline_runs)
    say(f"one question at a time: {options.latency_runs} stage by stage, {options.baseline_runs} baseline")
    samples: dict[str, list[float]] = {}
    for index, question in enumerate(questions[:runs]):
        if index < options.latency_runs:
            for name, seconds in time_question(model, question, decoding, memory).items():
                samples.setdefault(name, []).append(seconds)
        if index < options.baseline_runs:
            with memory.track("baseline"):
                seconds, tokens = baseline_answer(model, question.audio, options.max_new_tokens or ANSWER_TOKENS)
            samples.setdefault("baseline", []).append(seconds)
            samples.setdefault("baseline_tokens", []).append(tokens)
    return one_at_a_time_report(samples)


def time_question(
    model: AQAModel, question: Question, decoding: DecodingOptions, memory: PeakMemory
) -> dict[str, float]:
    """Seconds of each stage, of a whole answer in each mode, and of scoring without the shared prefill."""
    times = {f"stage.{name}": seconds for name, seconds in time_stages(model, question, decoding).items()}
    modes = {
        "answer_mode": decoding,
        "generate_only": replace(decoding, score=False),
        "score_only": replace(decoding, generate=False),
    }
    for name, mode in modes.items():
        with memory.track(f"one_question_{name}"):
            times[f"answer.{name}"] = time_answer(model, question, mode)
    times["unshared_scoring"] = time_unshared_scoring(model, question)
    return times


def one_at_a_time_report(samples: dict[str, list[float]]) -> dict:
    def section(prefix: str) -> dict[str, float]:
        return {
            key.removeprefix(prefix): median_ms(values) for key, values in samples.items() if key.startswith(prefix)
        }

    report = {}
    if "stage.prefill" in samples:
        latency = section("stage.")
        report["latency_ms"] = latency | {"total": round(sum(latency.values()), 3)}
        report["answer_latency_ms"] = section("answer.")
        shared = latency["prefill"] + latency["option_scoring"]
        report["option_scoring_ms"] = {"shared_prefill": shared, "unshared": median_ms(samples["unshared_scoring"])}
    if "baseline" in samples:
        report["baseline"] = {
            "recipe": "model card: processor(text=..., audio=..., sampling_rate=16000) + "
            "model.generate(**inputs, max_new_tokens=N, do_sample=False), one question at a time",
            "latency_ms": median_ms(samples["baseline"]),
            "questions_per_s": round(len(samples["baseline"]) / sum(samples["baseline"]), 3),
            "decode_tokens_per_question": statistics.mean(samples["baseline_tokens"]),
        }
    return report


@torch.inference_mode()
def time_stages(model: AQAModel, question: Question, decoding: DecodingOptions) -> dict[str, float]:
    """The stages of `aqa.answer` for one question, each timed on its own (seconds)."""
    clock = Clock(model.device)
    prepared = prepare(question)
    if isinstance(prepared, AQAError):
        raise prepared
    audio = clock.lap()
    inputs = build_inputs(model, [prepared], decoding.think)
    features = clock.lap()
    cache = prefill(model, inputs)
    prefill_seconds = clock.lap()
    generate_text(model, inputs, cache, decoding)
    decode = clock.lap()
    crop(cache, inputs["input_ids"].shape[1] - 1)
    score_options(model, inputs, cache, [question.options], [""], decoding.think)
    scoring = clock.lap()
    return {
        "audio_load_resample": audio,
        "feature_extraction": features,
        "prefill": prefill_seconds,
        "decode": decode,
        "option_scoring": scoring,
    }


@torch.inference_mode()
def time_unshared_scoring(model: AQAModel, question: Question) -> float:
    """Scoring without the shared prefill: every option re-runs the audio encoder and the whole prompt."""
    prepared = prepare(question)
    clock = Clock(model.device)
    for option in question.options:
        inputs = build_inputs(model, [prepared], think=False)
        cache = prefill(model, inputs)
        continuation_logprobs(model, inputs, cache, [(0, option_tokens(model, option))])
    return clock.lap()


def option_tokens(model: AQAModel, option: str) -> list[int]:
    return model.tokenizer(f"<answer>{option}</answer>", add_special_tokens=False)["input_ids"]


def time_answer(model: AQAModel, question: Question, decoding: DecodingOptions) -> float:
    """Wall time of a whole answer through `aqa.answer_many`: audio file in, Result out."""
    clock = Clock(model.device)
    [(_, result)] = list(answer_many(model, [question], decoding, batch_size=1))
    if isinstance(result, AQAError):
        raise result
    return clock.lap()


def median_ms(seconds: Sequence[float]) -> float:
    return round(statistics.median(seconds) * 1000, 3)


class PeakMemory:
    """The highest reading per label; each tracked block restarts the high-water mark first."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peaks: dict[str, float] = {}

    @contextmanager
    def track(self, label: str) -> Iterator[None]:
        reset_peak(self.device)
        yield
        self.peaks[label] = max(self.peaks.get(label, 0.0), read_peak(self.device))


# --- throughput ---------------------------------------------------------------------------------------------------


def measure_throughput(
    model: AQAModel,
    questions: Sequence[Question],
    decoding: DecodingOptions,
    batch_sizes: Sequence[int],
    memory: PeakMemory,
) -> dict:
    """Questions per second through `answer_many`, audio files in, at each batch size."""
    throughput = {}
    for size in batch_sizes:
        say(f"throughput at batch {size} on {len(questions)} questions")
        with memory.track(f"batch_{size}"):
            clock = Clock(model.device)
            results = [result for _, result in answer_many(model, questions, decoding, batch_size=size)]
            seconds = clock.lap()
        failed = [result for result in results if isinstance(result, AQAError)]
        if failed:
            raise failed[0]
        throughput[f"batch_{size}"] = round(len(questions) / seconds, 3)
    return {"throughput_questions_per_s": throughput}


# --- decoding: eager against the fast path --------------------------------------------------------------------------


def fast_decoder(model: AQAModel) -> str:
    """The fast path this model can take: compiled where the loader would compile (a GPU in bf16/fp16), else the
    static cache alone (the CPU, where compiling costs more than it gives, and bitsandbytes, which cannot compile)."""
    would_compile = choose_decoder(model.hf, model.precision, model.device, None) == "compiled"
    return "compiled" if model.decoder == "compiled" or would_compile else "static"


def measure_decoding(model: AQAModel, questions: Sequence[Question], options: BenchOptions, memory) -> dict:
    """Milliseconds per generated token on each decoding path, at batch 1 and the largest batch size, from the
    prefilled cache (the time of `decode_tokens` forced tokens less that of 2, so the first steps' extra work is left
    out), and the seconds of a thinking answer of up to `think_tokens` tokens. Each path runs once untimed first (the
    fast one compiles)."""
    fast = fast_decoder(model)
    paths = {"eager": replace(model, decoder="eager"), fast: replace(model, decoder=fast)}
    say(f"decoding: eager against {fast}, {options.decode_tokens} tokens")
    per_token = {}
    for size in sorted({1, max(options.batch_sizes)}):
        batch = prepare_batch(model, questions[:size], think=False)
        for name, variant in paths.items():
            time_decode(variant, batch, 2)  # compiles the fast path, warms caches
            with memory.track(f"decode_{name}_batch_{size}"):
                short, long = time_decode(variant, batch, 2), time_decode(variant, batch, options.decode_tokens)
            per_token[f"{name}_batch_{size}"] = round((long - short) / (options.decode_tokens - 2) * 1000, 3)
    report = {"decode_ms_per_token": per_token | {"fast_path": fast}}
    if options.think_tokens:
        think = DecodingOptions(think=True, max_new_tokens=options.think_tokens)
        answer_one = questions[0]
        report["think_answer"] = {"max_new_tokens": options.think_tokens}
        for name, variant in paths.items():
            time_answer(variant, answer_one, think)  # warm
            clock = Clock(model.device)
            [(_, result)] = list(answer_many(variant, [answer_one], think, batch_size=1))
            report["think_answer"][f"{name}_seconds"] = round(clock.lap(), 3)
            report["think_answer"][f"{name}_characters"] = len(result.raw)
    return report


@torch.inference_mode()
def time_decode(model: AQAModel, batch, tokens: int) -> float:
    """Seconds to generate exactly `tokens` tokens for a prepared batch from its prefilled cache."""
    inputs = to_device(model, batch.inputs)
    cache = prefill(model, inputs)
    config = exactly(generation_config(model, DecodingOptions(max_new_tokens=tokens)), tokens)
    clock = Clock(model.device)
    generate_tokens(model, inputs, cache, config)
    return clock.lap()


# --- the baseline: the model card's recipe, one question at a time ------------------------------------------------


@torch.inference_mode()
def baseline_answer(model: AQAModel, path: Path, max_new_tokens: int) -> tuple[float, int]:
    """R1-AQA's model card, verbatim but for transformers 5's `audio=`: (seconds, tokens generated)."""
    from transformers.audio_utils import load_audio as card_load_audio  # soundfile + soxr, as librosa.load does

    clock = Clock(model.device)
    processor = model.processor
    message = build_messages(QUESTION, list(OPTIONS), audio_url=str(path))
    text = processor.apply_chat_template(message, add_generation_prompt=True, tokenize=False)
    audio = [card_load_audio(str(path), sampling_rate=SAMPLE_RATE, backend="soundfile")]
    # The card's padding=True, asked of the text only: Qwen2-Audio's processor pads audio to 30 s whatever is asked,
    # while Audio Flamingo 3's would pass it on to its feature extractor.
    padding = {"text_kwargs": {"padding": True}}
    inputs = processor(text=text, audio=audio, sampling_rate=SAMPLE_RATE, return_tensors="pt", **padding)
    # The card moves the inputs to the device; the features also go to the model's dtype, as Qwen2-Audio casts them
    # itself and Audio Flamingo 3's encoder does not.
    inputs = to_device(model, dict(inputs))
    ids = model.hf.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new = ids[:, inputs["input_ids"].size(1) :]
    response = processor.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    extract_answer(response[0])
    return clock.lap(), new.shape[1]


def speedups(report: dict) -> dict:
    """How many times faster than the baseline: per-question latency, and throughput at each batch size."""
    baseline = report.get("baseline")
    if not baseline:
        return {}
    out = {}
    for mode, ms in report.get("answer_latency_ms", {}).items():
        out[f"{mode}_latency"] = round(baseline["latency_ms"] / ms, 2)
    for batch, rate in report.get("throughput_questions_per_s", {}).items():
        out[f"throughput_{batch}"] = round(rate / baseline["questions_per_s"], 2)
    return out


def alternatives(report: dict) -> dict:
    """Ratios measured in this run between the way `aqa` works and the obvious alternative (above 1: `aqa` is faster).

    - answer mode against generating first and scoring after (the stage-by-stage pipeline): what reading greedy
      answers off the scoring pass saves (nothing with random weights, whose answers are never an option);
    - option scoring from the shared prefill against a full forward pass (audio and prompt) per option;
    - `answer_many` at batch 1 against `aqa.answer` called once per question: what doing the next question's CPU
      work (audio, template, tokens, features) in the background thread during the model's work saves;
    - each batch size against batch 1.
    """
    out = {}
    latency, answers = report.get("latency_ms"), report.get("answer_latency_ms")
    rates = report.get("throughput_questions_per_s", {})
    if latency and answers:
        out["answer_mode_vs_generate_then_score"] = round(latency["total"] / answers["answer_mode"], 2)
        scoring = report["option_scoring_ms"]
        out["shared_prefill_vs_unshared_scoring"] = round(scoring["unshared"] / scoring["shared_prefill"], 2)
        if "batch_1" in rates:
            out["pipelined_batch_1_vs_one_at_a_time"] = round(rates["batch_1"] * answers["answer_mode"] / 1000, 2)
    for batch, rate in rates.items():
        if "batch_1" in rates and batch != "batch_1":
            out[f"{batch}_vs_batch_1"] = round(rate / rates["batch_1"], 2)
    return out


# --- the CPU target: decode, resample and features of a 30 s clip -------------------------------------------------


def measure_features(model: AQAModel, folder: Path, runs: int = 10) -> dict:
    """Median ms to load a 30 s 44.1 kHz clip to 16 kHz and build its model inputs (template, tokens, log-mel)."""
    (folder / "30s").mkdir(exist_ok=True)
    [path] = write_clips(folder / "30s", 1, CHUNK_LENGTH)
    audio, features = [], []
    for _ in range(runs):
        clock = Clock(model.device)
        samples = load_audio(path)
        audio.append(clock.lap())
        build_inputs(model, [Prepared(Question(path, QUESTION, OPTIONS), samples, 0.0)], think=False)
        features.append(clock.lap())
    result = {"audio_load_resample": median_ms(audio), "feature_extraction": median_ms(features)}
    return result | {"total": round(sum(result.values()), 3)}


# --- the Markdown report ------------------------------------------------------------------------------------------


def format_report(report: dict) -> str:
    """A two-column Markdown table: one row per figure, sections in report order."""
    lines = ["| figure | value |", "| --- | --- |"]
    for section, values in report.items():
        if isinstance(values, dict):
            lines += [f"| {section}.{key} | {value} |" for key, value in values.items()]
        else:
            lines.append(f"| {section} | {values} |")
    return "\n".join(lines)
