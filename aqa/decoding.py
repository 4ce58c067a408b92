"""Answering questions: prompt, features, one shared prefill, generation, option scoring, batching."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import DynamicCache, GenerationConfig

from aqa.audio import CHUNK_LENGTH, N_SAMPLES, SAMPLE_RATE, AudioInput, duration_of, load_audio
from aqa.errors import AQAError
from aqa.model import AQAModel
from aqa.parsing import extract_think, parse_answer
from aqa.prompt import build_messages, check_question

ANSWER_TOKENS = 256  # default generation budget in answer mode (R1-AQA's evaluation setting)
THINK_TOKENS = 1024  # thinking mode writes its reasoning first
AUDIO_TOKENS_PER_SECOND = 25  # one <|AUDIO|> expands to ~25 tokens per second of audio (FACTS.md)
SCORING_LOGITS_BYTES = 2**29  # float32 logits of the options' tokens held at once while scoring
# Generation settings that make greedy decoding more than an argmax per step, each with the value that means "off":
# reading greedy answers off the scoring pass is exact only when none of them is active.
ARGMAX_CHANGERS = {
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "min_length": 0,
    "min_new_tokens": 0,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "sequence_bias": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "exponential_decay_length_penalty": None,
    "guidance_scale": 1.0,
    "watermarking_config": None,
    "stop_strings": None,
}


@dataclass(frozen=True)
class DecodingOptions:
    think: bool = False  # ask for <think> reasoning before the answer (the paper's prompt 3, not the released setup)
    max_new_tokens: int | None = None  # None: 256 in answer mode, 1024 in thinking mode
    sample: bool = False  # False: greedy; True: sample with the checkpoint's generation config
    generate: bool = True  # False: skip generation and answer from the option probabilities alone
    score: bool = True  # compute every option's probability (needed for the fallback answer)

    @property
    def token_budget(self) -> int:
        return self.max_new_tokens or (THINK_TOKENS if self.think else ANSWER_TOKENS)


@dataclass(frozen=True)
class Question:
    audio: AudioInput  # a path, a (sample_rate, array) pair, or a 16 kHz float array
    question: str
    options: tuple[str, ...]
    name: str = ""  # shown in notes and errors; the file name by default
    allow_duplicate_options: bool = False  # ask a benchmark item that repeats an option verbatim (MMAU has some)

    def __post_init__(self):
        object.__setattr__(self, "options", tuple(self.options))
        if not self.name:
            object.__setattr__(self, "name", str(self.audio) if isinstance(self.audio, (str, Path)) else "audio")


@dataclass(frozen=True)
class Timings:
    """Seconds per stage; in a batch, each stage's time divided by the batch size."""

    audio: float = 0.0  # decode and resample
    features: float = 0.0  # chat template, tokenizer, log-mel features
    generate: float = 0.0  # shared prefill (audio encoder + prompt) and decoding
    scoring: float = 0.0  # option probabilities from the shared prefill

    @property
    def total(self) -> float:
        return self.audio + self.features + self.generate + self.scoring


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


@dataclass(frozen=True)
class Prepared:
    """A question whose audio is loaded and checked."""

    question: Question
    samples: np.ndarray
    load_seconds: float


@dataclass(frozen=True)
class Batch:
    """A batch ready for the model: its items (bad ones as their errors, in place) and the good ones' inputs."""

    items: list[Prepared | AQAError]
    inputs: dict[str, torch.Tensor] | None  # the good items' tokens and features, on the CPU; None if none is good
    features_seconds: float  # chat template, tokenizer and log-mel features of the whole batch


@dataclass(frozen=True)
class OptionScores:
    """What one scoring pass tells about a batch."""

    probabilities: list[dict[str, float]]  # per question: option -> probability, summing to 1
    greedy: list[list[int] | None]  # per question: the option tokens greedy decoding writes, then stops; or None


def answer(
    model: AQAModel,
    audio: AudioInput,
    question: str,
    options: Sequence[str],
    decoding: DecodingOptions = DecodingOptions(),
) -> Result:
    """Answer one multiple-choice question about one clip; raises AQAError on bad input."""
    [(_, result)] = list(answer_many(model, [Question(audio, question, tuple(options))], decoding, batch_size=1))
    if isinstance(result, AQAError):
        raise result
    return result


def answer_many(
    model: AQAModel,
    questions: Sequence[Question],
    decoding: DecodingOptions = DecodingOptions(),
    batch_size: int = 8,
    progress: bool = False,
) -> Iterator[tuple[int, Result | AQAError]]:
    """Answer many questions in batches of similar length; yields (index, Result or error) as batches finish.

    Grouping by length keeps left padding short; greedy answers equal those of one-at-a-time calls. The CPU work of
    the next batch (audio decoding, chat template, tokens, log-mel features) runs in a background thread while the
    model works on the current one.
    """
    order = sorted(range(len(questions)), key=lambda i: length_key(questions[i]))
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


def length_key(question: Question) -> float:
    """Prompt length in tokens, roughly: audio tokens (capped at 30 s) plus the text; from file headers only."""
    seconds = min(duration_of(question.audio), CHUNK_LENGTH)
    return seconds * AUDIO_TOKENS_PER_SECOND + len(question.question) / 4 + sum(len(o) for o in question.options) / 4


def prepare_all(questions: Sequence[Question]) -> list[Prepared | AQAError]:
    return [prepare(question) for question in questions]


def prepare(question: Question) -> Prepared | AQAError:
    start = time.perf_counter()
    try:
        check_question(question.question, question.options, question.allow_duplicate_options)
        samples = load_audio(question.audio)
    except AQAError as error:
        return error
    return Prepared(question, samples, time.perf_counter() - start)


def prepare_batch(model: AQAModel, questions: Sequence[Question], think: bool) -> Batch:
    """All the CPU work of a batch before the model: audio, checks, chat template, tokens, log-mel features."""
    items = prepare_all(questions)
    good = [item for item in items if isinstance(item, Prepared)]
    start = time.perf_counter()
    inputs = build_cpu_inputs(model, good, think) if good else None
    return Batch(items, inputs, time.perf_counter() - start)


def run_batch(model: AQAModel, batch: Batch, decoding: DecodingOptions) -> list[Result | AQAError]:
    """Answer the good items of a batch together; bad items come back as their errors, in place."""
    good = [item for item in batch.items if isinstance(item, Prepared)]
    results = iter(answer_prepared(model, good, batch, decoding) if good else [])
    return [next(results) if isinstance(item, Prepared) else item for item in batch.items]


@torch.inference_mode()
def answer_prepared(
    model: AQAModel, items: Sequence[Prepared], batch: Batch, decoding: DecodingOptions
) -> list[Result]:
    """Prefill once; in greedy answer mode score the options first, since that pass also tells which answers greedy
    decoding would write (then nothing is left to generate for them); otherwise generate, then score."""
    clock = time.perf_counter()
    inputs = to_device(model, batch.inputs)
    cache = prefill(model, inputs)
    prefill_seconds, clock = time.perf_counter() - clock, time.perf_counter()
    # A repeated option is scored once, so that the probabilities still sum to 1 over the distinct options.
    distinct = [tuple(dict.fromkeys(item.question.options)) for item in items]
    scores = None
    if scores_first(model, decoding):
        scores = score_options(model, inputs, cache, distinct, [""] * len(items), think=False)
    scoring_seconds, clock = time.perf_counter() - clock, time.perf_counter()
    texts = write_answers(model, inputs, cache, decoding, scores)
    generate_seconds, clock = prefill_seconds + time.perf_counter() - clock, time.perf_counter()
    if scores is None and (decoding.score or not decoding.generate):
        drop_after(cache, inputs["input_ids"].shape[1] - 1)  # back to the shared prompt, dropping what was generated
        scores = score_options(model, inputs, cache, distinct, texts, decoding.think)
    scoring_seconds += time.perf_counter() - clock
    probabilities = scores.probabilities if scores else [{} for _ in items]
    share = len(items)
    timings = Timings(0.0, batch.features_seconds / share, generate_seconds / share, scoring_seconds / share)
    return [
        make_result(item, text, probs, replace(timings, audio=item.load_seconds))
        for item, text, probs in zip(items, texts, probabilities)
    ]


def scores_first(model: AQAModel, decoding: DecodingOptions) -> bool:
    """Whether the answer text can be read off the scoring pass: greedy answer mode with probabilities wanted."""
    wanted = decoding.generate and decoding.score and not decoding.sample and not decoding.think
    return wanted and plain_greedy(model, decoding)


def plain_greedy(model: AQAModel, decoding: DecodingOptions) -> bool:
    """True when greedy decoding is an argmax per step that stops at an end token: no penalty, ban or bias, also
    none that `generate` would merge in from the checkpoint's generation config for the settings we leave unset."""
    config = copy.deepcopy(generation_config(model, decoding))
    config.update(**model.model.generation_config.to_dict(), defaults_only=True)
    return all(getattr(config, name, None) in (None, off) for name, off in ARGMAX_CHANGERS.items())


def write_answers(
    model: AQAModel,
    inputs: dict[str, torch.Tensor],
    cache: DynamicCache,
    decoding: DecodingOptions,
    scores: OptionScores | None,
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
    texts = [decode_tokens(model, tokens) if tokens is not None else None for tokens in known]
    todo = [index for index, text in enumerate(texts) if text is None]
    if len(todo) == count:
        return generate(model, inputs, cache, decoding)
    if todo:
        rows = torch.tensor(todo, device=model.device)
        subset = {name: inputs[name][rows] for name in ("input_ids", "attention_mask")}
        for index, text in zip(todo, generate(model, subset, select_rows(cache, rows), decoding)):
            texts[index] = text
    return texts


def decode_tokens(model: AQAModel, tokens: list[int]) -> str:
    """The text of generated tokens, decoded exactly as `generate`'s output is."""
    return model.processor.batch_decode([tokens], skip_special_tokens=True, clean_up_tokenization_spaces=False)[0]


def build_inputs(model: AQAModel, items: Sequence[Prepared], think: bool) -> dict[str, torch.Tensor]:
    """Chat template, tokens and log-mel features for a batch, left-padded, on the model's device."""
    return to_device(model, build_cpu_inputs(model, items, think))


def to_device(model: AQAModel, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    moved = {name: tensor.to(model.device) for name, tensor in inputs.items()}
    moved["input_features"] = moved["input_features"].to(model.model.dtype)
    return moved


def build_cpu_inputs(model: AQAModel, items: Sequence[Prepared], think: bool) -> dict[str, torch.Tensor]:
    """Chat template, tokens and log-mel features for a batch, left-padded, on the CPU (thread-safe)."""
    conversations = [
        build_messages(item.question.question, item.question.options, think, audio_url=item.question.name)
        for item in items
    ]
    return encode_conversations(model.processor, conversations, [item.samples for item in items])


def encode_conversations(
    processor, conversations: Sequence[Sequence[dict]], clips: Sequence[np.ndarray], add_generation_prompt: bool = True
) -> dict[str, torch.Tensor]:
    """Chat template, left-padded tokens and log-mel features for conversations holding one 16 kHz clip each.

    The one place prompts become model inputs, for inference and training alike. Each <|AUDIO|> placeholder is
    expanded by the processor to one token per encoder frame of its own clip. With add_generation_prompt=False a
    conversation may end with the assistant's answer (SFT).
    """
    texts = [
        processor.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
        for messages in conversations
    ]
    # The encoder hears 30 s; the processor would cut longer audio itself, but cutting here saves the work.
    audio = [clip[:N_SAMPLES] for clip in clips]
    return dict(processor(text=texts, audio=audio, sampling_rate=SAMPLE_RATE, return_tensors="pt", padding=True))


def positions_of(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding, as `generate` computes them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def prefill(model: AQAModel, inputs: dict[str, torch.Tensor]) -> DynamicCache:
    """Run the audio encoder and the prompt, all but its last token, once: generation and scoring continue from it.

    The base model is called rather than the LM head, since no logits of the prompt are needed.
    """
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    cache = DynamicCache(config=model.model.config)
    model.model.model(
        input_ids=ids[:, :-1],
        attention_mask=mask[:, :-1],
        position_ids=positions_of(mask)[:, :-1],
        input_features=inputs["input_features"],
        feature_attention_mask=inputs["feature_attention_mask"],
        cache=cache,
        use_cache=True,
    )
    return cache


def drop_after(cache: DynamicCache, length: int) -> None:
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


def generation_config(model: AQAModel, decoding: DecodingOptions) -> GenerationConfig:
    """Pure greedy decoding by default (no repetition penalty); the checkpoint's own config with --sample."""
    own = model.model.generation_config
    if decoding.sample:
        config = GenerationConfig.from_dict(own.to_dict())
        config.max_new_tokens = decoding.token_budget
        return config
    return GenerationConfig(
        do_sample=False,
        num_beams=1,
        # Explicit neutral values: unset fields would be filled from the checkpoint's sampling config.
        temperature=1.0,
        top_p=1.0,
        top_k=50,
        repetition_penalty=1.0,
        max_new_tokens=decoding.token_budget,
        eos_token_id=own.eos_token_id,
        pad_token_id=own.pad_token_id if own.pad_token_id is not None else model.tokenizer.pad_token_id,
    )


def generate(
    model: AQAModel, inputs: dict[str, torch.Tensor], cache: DynamicCache, decoding: DecodingOptions
) -> list[str]:
    """Decode from the prefilled cache: only the prompt's last token is new to the model."""
    ids = inputs["input_ids"]
    output = model.model.generate(
        input_ids=ids,
        attention_mask=inputs["attention_mask"],
        cache=cache,
        generation_config=generation_config(model, decoding),
    )
    return model.processor.batch_decode(
        output[:, ids.shape[1] :], skip_special_tokens=True, clean_up_tokenization_spaces=False
    )


def score_options(
    model: AQAModel,
    inputs: dict[str, torch.Tensor],
    cache: DynamicCache,
    options: Sequence[Sequence[str]],
    texts: Sequence[str],
    think: bool,
) -> OptionScores:
    """Each option's probability: the model's likelihood of `<answer>{option}</answer>`, normalised over the options.

    The whole sequence is scored, closing tag included, so an option that is a prefix of another ("Dog" and
    "Dog barking") is not favoured; no length normalisation, so the numbers are the model's own conditional
    probabilities of each option given that it answers with one of them. In thinking mode the model's reasoning
    (its text before `<answer>`) precedes the tag. The prompt's KV cache is shared: each option adds only its tokens.
    The same pass shows, per question, the option (if any) that greedy decoding would write and then stop after.
    """
    items, continuations = [], []
    for item, (choices, text) in enumerate(zip(options, texts)):
        prefix = text.split("<answer>")[0] if think else ""
        items += [item] * len(choices)
        continuations += [f"{prefix}<answer>{option}</answer>" for option in choices]
    # Padded like the prompts, and the pads dropped: the background thread may be tokenizing the next batch, and a
    # call with other padding settings would switch the shared tokenizer's state under it.
    encoded = model.tokenizer(continuations, add_special_tokens=False, padding=True)
    rows = [  # (batch item, option tokens)
        (item, [token for token, keep in zip(ids, mask) if keep])
        for item, ids, mask in zip(items, encoded["input_ids"], encoded["attention_mask"])
    ]
    scored = continuation_logprobs(model, inputs, cache, rows)
    greedy = [None] * len(options)
    for (item, tokens), (_, is_greedy) in zip(rows, scored):
        if is_greedy:
            greedy[item] = tokens
    return OptionScores(normalise(options, [logprob for logprob, _ in scored]), greedy)


@dataclass(frozen=True)
class OptionLayout:
    """Every option of a batch side by side after its question's prompt, one sequence per question.

    Each sequence is the prompt's last token, then each option's tokens in turn (padded at the end). Position 0
    is shared: its logits predict every option's first token. `reads[r]` lists the sequence positions whose
    logits predict row r's tokens, then the one after its last token (for the end-token check)."""

    ids: torch.Tensor  # (questions, length): token ids
    segments: torch.Tensor  # (questions, length): 0 for the shared token, 1 + row for an option's tokens, -1 pad
    offsets: torch.Tensor  # (questions, length): position after the prompt's last token (0 for it and the pads)
    reads: torch.Tensor  # (rows, width + 1)
    targets: torch.Tensor  # (rows, width): row tokens, padded
    target_mask: torch.Tensor  # (rows, width)

    @staticmethod
    def build(rows: Sequence[tuple[int, list[int]]], last: torch.Tensor, pad: int) -> OptionLayout:
        sequences = [[(token, 0, 0)] for token in last.tolist()]  # (token, segment, offset); one device read
        reads, width = [], max(len(tokens) for _, tokens in rows)
        for row, (item, tokens) in enumerate(rows):
            start = len(sequences[item])
            sequences[item] += [(token, row + 1, offset + 1) for offset, token in enumerate(tokens)]
            read = [0] + list(range(start, start + len(tokens)))
            reads.append(read + [0] * (width + 1 - len(read)))
        length = max(len(sequence) for sequence in sequences)
        padded = torch.tensor([sequence + [(pad, -1, 0)] * (length - len(sequence)) for sequence in sequences])
        targets = [tokens + [pad] * (width - len(tokens)) for _, tokens in rows]
        target_mask = [[1] * len(tokens) + [0] * (width - len(tokens)) for _, tokens in rows]
        device = last.device
        ids, segments, offsets = (padded[..., field].to(device) for field in range(3))
        tensors = (torch.tensor(reads), torch.tensor(targets), torch.tensor(target_mask))
        return OptionLayout(ids, segments, offsets, *(tensor.to(device) for tensor in tensors))

    def attention_mask(self, prompt_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Additive (questions, 1, length, prompt + length) mask: every token sees its question's prompt and the
        shared token; an option's token also sees its own earlier tokens, never another option's."""
        seen = torch.arange(self.ids.shape[1], device=self.ids.device)
        same = (self.segments[:, :, None] == self.segments[:, None, :]) & (self.segments[:, None, :] > 0)
        own = (seen[None, :, None] >= seen[None, None, :]) & same
        shared = (seen == 0)[None, None, :].expand_as(own)
        prompt = prompt_mask.bool()[:, None, :].expand(-1, self.ids.shape[1], -1)
        allowed = torch.cat([prompt, own | shared], dim=-1)[:, None]
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )


def continuation_logprobs(
    model: AQAModel, inputs, cache: DynamicCache, rows: Sequence[tuple[int, list[int]]]
) -> list[tuple[float, bool]]:
    """Per row, all rows in one forward pass: the summed log-probability of its tokens after its prompt, and
    whether greedy decoding would write exactly those tokens and then an end token (the argmax at every step).

    A question's options share its prompt's cache as they share the sequence after it (OptionLayout): the cache is
    neither copied per option nor re-run, and is cut back to the prompt afterwards."""
    length = cache.get_seq_length()
    layout = OptionLayout.build(rows, inputs["input_ids"][:, length], model.tokenizer.pad_token_id)
    hidden = model.model.model(
        input_ids=layout.ids,
        attention_mask=layout.attention_mask(inputs["attention_mask"][:, :length], model.model.dtype),
        position_ids=positions_of(inputs["attention_mask"])[:, length : length + 1] + layout.offsets,
        cache=cache,
        use_cache=True,
    ).last_hidden_state
    drop_after(cache, length)
    items = torch.tensor([item for item, _ in rows], device=hidden.device)
    vocabulary = model.model.get_output_embeddings().weight.shape[0]
    per_chunk = max(1, SCORING_LOGITS_BYTES // (4 * vocabulary * layout.reads.shape[1]))
    scored = []
    for chunk in chunked(range(len(rows)), per_chunk):
        picked = slice(chunk.start, chunk.stop)
        states = hidden[items[picked, None], layout.reads[picked]]
        scored += read_scores(model, states, layout.targets[picked], layout.target_mask[picked])
    return scored


def read_scores(
    model: AQAModel, states: torch.Tensor, targets: torch.Tensor, target_mask: torch.Tensor
) -> list[tuple[float, bool]]:
    """Per row: the summed log-probability of its target tokens, and whether each is the argmax and an end token
    follows. `states` holds the hidden states whose logits predict each target, then the one after the last."""
    logits = model.model.get_output_embeddings()(states)
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)
    chosen = logits.argmax(-1)  # what greedy decoding picks after each position
    follows = ((chosen[:, :-1] == targets) | (target_mask == 0)).all(-1)
    after_last = chosen.gather(1, target_mask.sum(-1, keepdim=True)).squeeze(1)
    greedy = follows & torch.isin(after_last, stop_token_ids(model))
    return list(zip((logprobs * target_mask).sum(-1).tolist(), greedy.tolist()))


def select_rows(cache: DynamicCache, index: torch.Tensor) -> DynamicCache:
    """A new cache holding copies of the given batch rows (an index may repeat: one row per option)."""
    return DynamicCache(ddp_cache_data=[(layer.keys[index], layer.values[index]) for layer in cache.layers])


def stop_token_ids(model: AQAModel) -> torch.Tensor:
    stops = generation_config(model, DecodingOptions()).eos_token_id
    return torch.tensor(stops if isinstance(stops, list) else [stops], device=model.device)


def normalise(options: Sequence[Sequence[str]], scores: Sequence[float]) -> list[dict[str, float]]:
    out, at = [], 0
    for choices in options:
        logits = torch.tensor(scores[at : at + len(choices)], dtype=torch.float64)
        out.append(dict(zip(choices, torch.softmax(logits, 0).tolist())))
        at += len(choices)
    return out


def make_result(item: Prepared, text: str, probabilities: dict[str, float], timings: Timings) -> Result:
    parsed = parse_answer(text, item.question.options) if text else None
    best = max(probabilities, key=probabilities.get) if probabilities else None
    answer, source = (parsed, "text") if parsed else ((best, "probabilities") if best else (None, "none"))
    return Result(
        answer=answer,
        answer_source=source,
        raw=text,
        think=extract_think(text),
        probabilities=probabilities,
        duration=len(item.samples) / SAMPLE_RATE,
        note=long_audio_note(item),
        timings=timings,
    )


def long_audio_note(item: Prepared) -> str | None:
    """R1-AQA's encoder hears 30 s; longer clips are answered on their first 30 s, and the result says so."""
    seconds = len(item.samples) / SAMPLE_RATE
    if seconds <= CHUNK_LENGTH:
        return None
    return f"the clip is {seconds:.1f} s long; the model heard only its first {CHUNK_LENGTH} s"


def chunked(rows: Sequence, size: int) -> Iterable[Sequence]:
    return (rows[i : i + size] for i in range(0, len(rows), size))
