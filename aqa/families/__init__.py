"""The supported model families, chosen from a checkpoint's `config.model_type`.

family_of("qwen2_audio")        # QWEN2_AUDIO
family_named("qwen2.5-omni")    # QWEN2_5_OMNI (the --family value)
"""

from __future__ import annotations

from aqa.defaults import FAMILY_NAMES
from aqa.errors import ModelError
from aqa.families.audio_flamingo3 import AUDIO_FLAMINGO_3
from aqa.families.base import (
    THINKING_STYLES,
    Family,
    Parameters,
    Published,
    family_parameters,
)
from aqa.families.qwen2_5_omni import QWEN2_5_OMNI
from aqa.families.qwen2_audio import QWEN2_AUDIO
from aqa.families.qwen3_omni import QWEN3_OMNI

FAMILIES = {family.name: family for family in (QWEN2_AUDIO, QWEN2_5_OMNI, QWEN3_OMNI, AUDIO_FLAMINGO_3)}
assert tuple(FAMILIES) == FAMILY_NAMES, "aqa.defaults.FAMILY_NAMES lists the families for the torch-free CLI"

__all__ = [
    "AUDIO_FLAMINGO_3",
    "FAMILIES",
    "QWEN2_5_OMNI",
    "QWEN2_AUDIO",
    "QWEN3_OMNI",
    "THINKING_STYLES",
    "Family",
    "Parameters",
    "Published",
    "family_named",
    "family_of",
    "family_parameters",
]


def family_of(model_type: str, name: str = "this checkpoint") -> Family:
    """The family whose checkpoints have this `config.model_type`; ModelError, in one line, for any other."""
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    supported = ", ".join(family.title for family in FAMILIES.values())
    raise ModelError(f"{name} is a {model_type!r} model, not one of the supported families ({supported})")


def family_named(name: str) -> Family:
    if name not in FAMILIES:
        raise ModelError(f"unknown model family {name!r}: choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name]
