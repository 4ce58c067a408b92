"""Option scoring: every option's probability from one pass over the shared prompt cache.

Each option is scored by the model's likelihood of `<answer>{option}</answer>` after the prompt, closing tag
included, so that an option that is a prefix of another ("Dog" and "Dog barking") is not favoured; there is no
length normalisation, so the numbers are the model's own conditional probabilities of each option given that it
answers with one of them. In thinking mode the model's reasoning (its text before `<answer>`) comes first, once per
question, shared by its options (its own probability is the same for every option, so it is not counted).

A question's options sit side by side after its prompt in one sequence (OptionLayout), a 4-D attention mask keeping
each to itself: the prompt's cache is neither copied per option nor re-run. The same pass shows, per question, the
option (if any) that greedy decoding would write and then stop after.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from aqa.model import AQAModel
from aqa.prefill import crop, positions_of

SCORING_LOGITS_BYTES = 2**29  # float32 logits of the options' tokens held at once while scoring


@dataclass(frozen=True)
class OptionScores:
    """What one scoring pass tells about a batch."""

    probabilities: list[dict[str, float]]  # per question: option -> probability, summing to 1
    greedy: list[list[int] | None]  # per question: the option tokens greedy decoding writes, then stops; or None


def score_options(
    model: AQAModel,
    inputs: dict[str, torch.Tensor],
    cache: DynamicCache,
    options: Sequence[Sequence[str]],
    texts: Sequence[str],
    think: bool,
) -> OptionScores:
    """Each question's option probabilities (and greedy option), from the cache of its prompt."""
    items = [item for item, choices in enumerate(options) for _ in choices]
    answers = [f"<answer>{option}</answer>" for choices in options for option in choices]
    rows = list(zip(items, tokenize(model, answers)))  # (batch item, option tokens)
    prefixes = tokenize(model, [text.split("<answer>")[0] if think else "" for text in texts])
    scored = continuation_logprobs(model, inputs, cache, rows, prefixes)
    greedy = [None] * len(options)
    for (item, tokens), (_, is_greedy) in zip(rows, scored):
        if is_greedy:
            greedy[item] = tokens
    return OptionScores(softmax_per_question(options, [logprob for logprob, _ in scored]), greedy)


def tokenize(model: AQAModel, texts: Sequence[str]) -> list[list[int]]:
    """Tokens of each text, padded like the prompts and the pads dropped: the background thread may be tokenizing
    the next batch, and a call with other padding settings would switch the shared tokenizer's state under it."""
    encoded = model.tokenizer(list(texts), add_special_tokens=False, padding=True)
    return [
        [token for token, keep in zip(ids, mask) if keep]
        for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"])
    ]


@dataclass(frozen=True)
class OptionLayout:
    """Every option of a batch side by side after its question's prompt, one sequence per question.

    Each sequence is the prompt's last token and the question's shared prefix (its reasoning, in thinking mode),
    then each option's tokens in turn (padded at the end). The shared part's last position's logits predict every
    option's first token. `reads[r]` lists the sequence positions whose logits predict row r's tokens, then the one
    after its last token (for the end-token check)."""

    ids: torch.Tensor  # (questions, length): token ids
    segments: torch.Tensor  # (questions, length): 0 for the shared tokens, 1 + row for an option's tokens, -1 pad
    offsets: torch.Tensor  # (questions, length): position after the prompt's last token (0 for it and the pads)
    reads: torch.Tensor  # (rows, width + 1)
    targets: torch.Tensor  # (rows, width): row tokens, padded
    target_mask: torch.Tensor  # (rows, width)

    @staticmethod
    def build(
        rows: Sequence[tuple[int, list[int]]], last: torch.Tensor, pad: int, prefixes: Sequence[list[int]] = ()
    ) -> OptionLayout:
        prefixes = prefixes or [[] for _ in range(len(last))]
        sequences = [  # (token, segment, offset); the last tokens in one device read
            [(token, 0, 0)] + [(t, 0, offset + 1) for offset, t in enumerate(prefix)]
            for token, prefix in zip(last.tolist(), prefixes)
        ]
        reads, width = [], max(len(tokens) for _, tokens in rows)
        for row, (item, tokens) in enumerate(rows):
            start, shared = len(sequences[item]), len(prefixes[item])
            sequences[item] += [(token, row + 1, shared + offset + 1) for offset, token in enumerate(tokens)]
            read = [shared] + list(range(start, start + len(tokens)))
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
        shared tokens before it; an option's token also sees its own earlier tokens, never another option's."""
        seen = torch.arange(self.ids.shape[1], device=self.ids.device)
        earlier = seen[None, :, None] >= seen[None, None, :]
        same = (self.segments[:, :, None] == self.segments[:, None, :]) & (self.segments[:, None, :] > 0)
        shared = (self.segments == 0)[:, None, :]
        prompt = prompt_mask.bool()[:, None, :].expand(-1, self.ids.shape[1], -1)
        allowed = torch.cat([prompt, earlier & (same | shared)], dim=-1)[:, None]
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )


def continuation_logprobs(
    model: AQAModel,
    inputs,
    cache: DynamicCache,
    rows: Sequence[tuple[int, list[int]]],
    prefixes: Sequence[list[int]] = (),
) -> list[tuple[float, bool]]:
    """Per row, all rows in one forward pass: the summed log-probability of its tokens after its prompt (and its
    question's prefix), and whether greedy decoding would write exactly those tokens and then an end token (the
    argmax at every step).

    The cache is cut back to the prompt afterwards."""
    length = cache.get_seq_length()
    layout = OptionLayout.build(rows, inputs["input_ids"][:, length], model.tokenizer.pad_token_id, prefixes)
    hidden = model.hf.model(
        input_ids=layout.ids,
        attention_mask=layout.attention_mask(inputs["attention_mask"][:, :length], model.hf.dtype),
        position_ids=positions_of(inputs["attention_mask"])[:, length : length + 1] + layout.offsets,
        cache=cache,
        use_cache=True,
    ).last_hidden_state
    crop(cache, length)
    items = torch.tensor([item for item, _ in rows], device=hidden.device)
    vocabulary = model.hf.get_output_embeddings().weight.shape[0]
    per_chunk = max(1, SCORING_LOGITS_BYTES // (4 * vocabulary * layout.reads.shape[1]))
    scored = []
    for start in range(0, len(rows), per_chunk):
        picked = slice(start, start + per_chunk)
        states = hidden[items[picked, None], layout.reads[picked]]
        scored += read_scores(model, states, layout.targets[picked], layout.target_mask[picked])
    return scored


def read_scores(
    model: AQAModel, states: torch.Tensor, targets: torch.Tensor, target_mask: torch.Tensor
) -> list[tuple[float, bool]]:
    """Per row: the summed log-probability of its target tokens, and whether each is the argmax and an end token
    follows. `states` holds the hidden states whose logits predict each target, then the one after the last."""
    logits = model.hf.get_output_embeddings()(states)
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)
    chosen = logits.argmax(-1)  # what greedy decoding picks after each position
    follows = ((chosen[:, :-1] == targets) | (target_mask == 0)).all(-1)
    after_last = chosen.gather(1, target_mask.sum(-1, keepdim=True)).squeeze(1)
    stops = torch.tensor(model.stop_token_ids, device=chosen.device)
    greedy = follows & torch.isin(after_last, stops)
    return list(zip((logprobs * target_mask).sum(-1).tolist(), greedy.tolist()))


def softmax_per_question(options: Sequence[Sequence[str]], scores: Sequence[float]) -> list[dict[str, float]]:
    """Each question's summed log-probabilities (flat, in option order) turned into probabilities over its options."""
    out, at = [], 0
    for choices in options:
        logits = torch.tensor(scores[at : at + len(choices)], dtype=torch.float64)
        out.append(dict(zip(choices, torch.softmax(logits, 0).tolist())))
        at += len(choices)
    return out
