"""Answering questions: prefill once, score the options, generate what is left to write, and choose the answer.

    aqa.answer(model, "clip.wav", "What is it?", ["Dog", "Cat"])                   # one question
    for index, result in aqa.answer_many(model, questions, batch_size=16): ...      # many, batched

In greedy answer mode (the default) the options are scored first: that pass also shows which answers greedy
decoding would write (an option, then the end token, as R1-AQA usually answers), and only the others are generated.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import PurePath

import torch
from tqdm.auto import tqdm
from transformers.generation.streamers import BaseStreamer

from aqa.audio import SAMPLE_RATE, AudioInput, duration_of, load_audio
from aqa.errors import AQAError
from aqa.generation import decode_tokens, generate_text, plain_greedy
from aqa.inputs import Batch, Prepared, length_key, prepare_batch, to_device
from aqa.model import AQAModel
from aqa.options import THINK_TOKENS, DecodingOptions, Question, Result, Timings
from aqa.parsing import extract_think, parse_answer
from aqa.prefill import copy_rows, crop, prefill
from aqa.scoring import OptionScores, score_options
from aqa.timing import Clock
from aqa.windows import merge_windows, window_questions, window_spans


def answer(
    model: AQAModel,
    audio: AudioInput,
    question: str,
    options: Sequence[str],
    decoding: DecodingOptions = DecodingOptions(),
) -> Result:
    """Answer one multiple-choice question about one clip; raises AQAError on bad input."""
    [(_, result)] = list(answer_many(model, [Question(audio, question, options)], decoding, batch_size=1))
    if isinstance(result, AQAError):
        raise result
    return result


def answer_many(
    model: AQAModel,
    questions: Sequence[Question],
    decoding: DecodingOptions = DecodingOptions(),
    batch_size: int = 8,
    progress: bool = False,
    keep_order: bool = False,
) -> Iterator[tuple[int, Result | AQAError]]:
    """Answer many questions in batches of similar length; yields (index, Result or error) as batches finish.

    Grouping by length keeps left padding short; greedy answers equal those of one-at-a-time calls. `keep_order`
    batches the questions in the order given instead (as R1-AQA's test script does). The CPU work of the next batch
    (audio decoding, chat template, tokens, log-mel features) runs in a background thread while the model works on
    the current one.
    """
    if decoding.long_audio == "windows":
        yield from answer_in_windows(model, questions, decoding, batch_size, progress, keep_order)
        return
    order = list(range(len(questions)))
    if not keep_order and len(questions) > 1:
        order.sort(key=lambda i: length_key(model, questions[i]))
    batches = [[questions[i] for i in order[i : i + batch_size]] for i in range(0, len(order), batch_size)]
    bar = tqdm(total=len(questions), unit="question", disable=not progress)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(prepare_batch, model, batches[0], decoding.think) if batches else None
        for number in range(len(batches)):
            batch = pending.result()
            if number + 1 < len(batches):
                pending = pool.submit(prepare_batch, model, batches[number + 1], decoding.think)
            start = number * batch_size
            for index, result in zip(order[start : start + batch_size], run_batch(model, batch, decoding)):
                yield index, result
            bar.update(len(batch.items))
    bar.close()


def answer_in_windows(
    model: AQAModel,
    questions: Sequence[Question],
    decoding: DecodingOptions,
    batch_size: int,
    progress: bool,
    keep_order: bool,
) -> Iterator[tuple[int, Result | AQAError]]:
    """answer_many for long_audio="windows": each clip over 30 s becomes its windows' questions (aqa.windows), all
    answered in batches together, and a clip's Result (or its first error) comes once its last window is answered."""
    plans = [plan_windows(question, model.heard_seconds) for question in questions]
    # (clip, window number, question) per window of every clip
    flat = [(index, number, window) for index, (asked, _, _) in enumerate(plans) for number, window in enumerate(asked)]
    waiting: dict[int, dict[int, Result | AQAError]] = {}
    plain = replace(decoding, long_audio="first")
    for position, result in answer_many(model, [q for *_, q in flat], plain, batch_size, progress, keep_order):
        index, number, _ = flat[position]
        asked, spans, seconds = plans[index]
        got = waiting.setdefault(index, {})
        got[number] = result
        if len(got) < len(asked):
            continue
        results = [got[number] for number in range(len(asked))]
        errors = [result for result in results if isinstance(result, AQAError)]
        if errors:
            yield index, errors[0]
        else:
            yield index, merge_windows(results, spans, seconds, model.heard_seconds) if spans else results[0]
        del waiting[index]


def plan_windows(
    question: Question, heard_seconds: float
) -> tuple[list[Question], list[tuple[float, float]] | None, float]:
    """(the questions to ask, the windows' spans or None, seconds) for one clip and a model that hears
    `heard_seconds` in one piece; only a clip known to be longer is loaded here (from its header first), the others
    are loaded in the background like any question."""
    if duration_of(question.audio) <= heard_seconds:
        return [question], None, 0.0
    try:
        samples = load_audio(question.audio, question.channel)
    except AQAError:
        return [question], None, 0.0  # the error is reported when the question is prepared
    seconds = len(samples) / SAMPLE_RATE
    spans = window_spans(seconds, heard_seconds)
    return window_questions(question, samples, spans), spans if len(spans) > 1 else None, seconds


def run_batch(model: AQAModel, batch: Batch, decoding: DecodingOptions) -> list[Result | AQAError]:
    """Answer the good items of a batch together; bad items come back as their errors, in place."""
    results = iter(answer_batch(model, batch, decoding) if batch.good else [])
    return [next(results) if isinstance(item, Prepared) else item for item in batch.items]


@torch.inference_mode()
def answer_batch(
    model: AQAModel,
    batch: Batch,
    decoding: DecodingOptions,
    streamer: BaseStreamer | None = None,
    stop: threading.Event | None = None,
) -> list[Result]:
    """Prefill once; in greedy answer mode score the options first, since that pass also tells which answers greedy
    decoding would write (then nothing is left to generate for them); otherwise generate, then score. `streamer`
    and `stop` reach generation (answer_stream)."""
    items = batch.good
    reasons = reasoning(model, decoding)
    if reasons and decoding.max_new_tokens is None:
        decoding = replace(decoding, max_new_tokens=THINK_TOKENS)  # a native thinker writes its reasoning first
    if decoding.seed is not None:
        torch.manual_seed(batch_seed(decoding.seed, [item.question for item in items]))
    clock = Clock(model.device)
    inputs = to_device(model, batch.inputs)
    cache = prefill(model, inputs)
    prefill_seconds = clock.lap()
    # A repeated option is scored once, so that the probabilities still sum to 1 over the distinct options.
    distinct = [tuple(dict.fromkeys(item.question.options)) for item in items]
    scores = None
    if scores_first(model, decoding):
        scores = score_options(model, inputs, cache, distinct, [""] * len(items), think=False)
    scoring_seconds = clock.lap()
    texts = write_answers(model, inputs, cache, decoding, scores, streamer, stop)
    generation_seconds = prefill_seconds + clock.lap()
    if scores is None and (decoding.score or not decoding.generate):
        crop(cache, inputs["input_ids"].shape[1] - 1)  # back to the shared prompt, dropping what was generated
        scores = score_options(model, inputs, cache, distinct, texts, reasons)
    scoring_seconds += clock.lap()
    probabilities = scores.probabilities if scores else [{} for _ in items]
    share = len(items)
    timings = Timings(0.0, batch.features_seconds / share, generation_seconds / share, scoring_seconds / share)
    return [
        make_result(item, text, probs, replace(timings, audio=item.load_seconds), model.heard_seconds)
        for item, text, probs in zip(items, texts, probabilities)
    ]


# How batch_seed derives a batch's seed, recorded in evaluation manifests: 1 hashed each clip's name as given (for an
# evaluation run, its path under --audio-dir, so a copy of the data elsewhere sampled other text); 2 hashes what
# travels with the data.
SEEDING = 2


def batch_seed(seed: int, questions: Sequence[Question]) -> int:
    """The RNG seed of one batch: from the run's seed and the batch's questions (each one's key, the base name of its
    clip, its text and options), so that a batch samples the same text whenever it is asked again with the same
    seed, on any copy of the data in any folder, and batches do not share one random stream. Never a full path: the
    same files elsewhere would sample other text."""
    text = "\n".join(
        f"{question.key}\t{PurePath(question.name).name}\t{question.text}\t{question.options}" for question in questions
    )
    return int.from_bytes(hashlib.sha256(f"{seed}\n{text}".encode()).digest()[:8], "little")


def reasoning(model: AQAModel, decoding: DecodingOptions) -> bool:
    """Whether the model writes reasoning before its answer: asked to (thinking mode), or by nature (a checkpoint
    that thinks natively, as Qwen3-Omni's Thinking one). Its options are then scored after that reasoning."""
    return decoding.think or model.thinking == "native"


def scores_first(model: AQAModel, decoding: DecodingOptions) -> bool:
    """Whether the answer text can be read off the scoring pass: greedy answer mode with probabilities wanted."""
    wanted = decoding.generate and decoding.score and not decoding.sample and not reasoning(model, decoding)
    return wanted and plain_greedy(model, decoding)


def write_answers(
    model: AQAModel,
    inputs: dict[str, torch.Tensor],
    cache,
    decoding: DecodingOptions,
    scores: OptionScores | None,
    streamer: BaseStreamer | None = None,
    stop: threading.Event | None = None,
) -> list[str]:
    """Each item's generated text: what the scoring pass showed greedy decoding would write, where it showed it
    (within the token budget); generated from the prefilled cache for the others, and only for them."""
    count = inputs["input_ids"].shape[0]
    if not decoding.generate:
        return [""] * count
    known = [
        tokens if tokens is not None and len(tokens) < decoding.token_budget else None
        for tokens in (scores.greedy if scores else [None] * count)
    ]
    texts = [decode_tokens(model, [tokens])[0] if tokens is not None else None for tokens in known]
    todo = [index for index, text in enumerate(texts) if text is None]
    if len(todo) == count:
        return generate_text(model, inputs, cache, decoding, streamer, stop)
    if todo:
        rows = torch.tensor(todo, device=model.device)
        subset = {name: inputs[name][rows] for name in ("input_ids", "attention_mask")}
        for index, text in zip(todo, generate_text(model, subset, copy_rows(cache, rows), decoding, streamer, stop)):
            texts[index] = text
    return texts


def make_result(
    item: Prepared, text: str, probabilities: dict[str, float], timings: Timings, heard_seconds: float
) -> Result:
    """The answer is the option the text names; else the most probable option; and the result says which."""
    parsed = parse_answer(text, item.question.options) if text else None
    best = max(probabilities, key=probabilities.get) if probabilities else None
    answer, source = (parsed, "text") if parsed else ((best, "probabilities") if best else (None, "none"))
    seconds = len(item.samples) / SAMPLE_RATE
    # The encoder hears `heard_seconds` (R1-AQA's 30 s); a longer clip is answered on its start, and the result says so.
    note = f"the clip is {seconds:.1f} s long; the model heard only its first {heard_seconds:g} s"
    return Result(
        answer=answer,
        answer_source=source,
        raw=text,
        think=extract_think(text),
        probabilities=probabilities,
        duration=seconds,
        note=note if seconds > heard_seconds else None,
        timings=timings,
    )
