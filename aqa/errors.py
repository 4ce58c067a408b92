"""Errors whose message is one line a user can act on; the CLI and the app show them without a traceback."""


class AQAError(Exception):
    """Base class: anything the user can fix (bad audio, bad options, a model path that is not a checkpoint)."""


class AudioError(AQAError):
    """An audio input that cannot be used: missing, empty, truncated, not audio, or an unreadable array."""


class InputError(AQAError):
    """A question or an option list that cannot be asked (empty question, fewer than 2 options, duplicates)."""


class ModelError(AQAError):
    """A model that cannot be loaded: not a Qwen2-Audio checkpoint, a missing library, not enough memory."""


def first_line(error: BaseException) -> str:
    """The first non-blank line of an exception's message (library errors can run to pages)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def kind_of(value) -> str:
    """What a value is, in the words of JSON (where a value of the wrong type usually comes from), for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"
