"""Caps on the size of one question, so that no single question can take a server's memory.

Torch-free, so that the CLI and the app check them before a clip is decoded or a model loaded. The defaults leave
room above every benchmark item (MMAU test-mini: questions up to 255 characters, options up to 150, up to 8 options;
MMAR: 316, 230 and 6) and bound what one question costs; docs/benchmarks.md measures that cost at the caps.
"""

from __future__ import annotations

from dataclasses import dataclass

from aqa.audio import CHUNK_LENGTH

# The processor expands the one <|AUDIO|> placeholder to one token per encoder frame: 25 per second, 750 for the
# 30 s Qwen2-Audio hears (longer clips are cut first). Families that hear longer clips in one piece (Qwen2.5-Omni
# 300 s, Audio Flamingo 3 600 s, Qwen3-Omni uncut) add their audio beyond this; the clip-length caps bound that part.
MAX_AUDIO_TOKENS = 25 * CHUNK_LENGTH
# Tokens of the chat template around the user's text (system turn, "Audio 1: ", the turn markers, the assistant's
# header) with Qwen's special tokens counted one each and every other byte as one token; the audio placeholder is
# counted in MAX_AUDIO_TOKENS instead.
CHAT_TOKENS = 69


@dataclass(frozen=True)
class Limits:
    """What one question may ask of the model; each cap is checked with a one-line message naming it."""

    question_chars: int = 1000  # characters in the question
    option_chars: int = 300  # characters in one option
    options: int = 10  # options per question
    prompt_tokens: int = 4096  # the prompt's tokens, audio included (see prompt_tokens_bound)


def prompt_tokens_bound(text: str) -> int:
    """The most tokens a prompt whose user text is `text` can have: the audio at its 30 s maximum, the chat template,
    and one token per UTF-8 byte of the text.

    Qwen's tokenizer is a byte-level BPE: its merges only join bytes, so a text never has more tokens than bytes
    (control tokens aside, and those are refused in user text). The bound needs no tokenizer, so it is checked before
    anything is loaded; for English text Qwen's tokenizer makes about a quarter as many tokens.
    """
    return MAX_AUDIO_TOKENS + CHAT_TOKENS + len(text.encode("utf-8"))
