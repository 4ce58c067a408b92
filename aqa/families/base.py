"""What a model family is to the rest of aqa: one small interface, one room per family behind it.

Everything that differs between Qwen2-Audio, the Qwen2.5-Omni and Qwen3-Omni thinkers and Audio Flamingo 3 is asked
of the checkpoint's `Family`: which class loads it, which processor outputs carry the audio, how long a clip it hears
in one piece, how many audio tokens a second becomes, what 4/8-bit leave unquantized, whether its chat template
thinks by itself, and how its tiny and full-size random-weight versions are built. Prompts, option scoring,
generation, streaming, windows, batching, evaluation and the app work through it, with no family test of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationConfig, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin

# Whether a checkpoint reasons unasked: "none" (it answers as the prompt asks), "native" (it is trained to write its
# reasoning first, as Qwen3-Omni-30B-A3B-Thinking writes <think> ... </think>): a native thinker's options are scored
# after its reasoning, as in thinking mode, and it gets thinking mode's token budget.
THINKING_STYLES = ("none", "native")
# Bytes per parameter in each precision. bitsandbytes quantizes nn.Linear layers only (NF4 with double quantization
# costs ~0.516 bytes); what it leaves (encoders, projector, embeddings, head, fused MoE experts) stays in bf16.
BYTES_PER_PARAM = {"bf16": 2.0, "fp16": 2.0, "fp32": 4.0, "4bit": 0.516, "8bit": 1.0}
# Where most of the decoder layers' weights are not nn.Linear layers (Qwen3-Omni's experts are fused 3-D tensors:
# 29.0B of its thinker's 31.7B parameters), 4/8-bit would save next to nothing and are refused.
MIN_QUANTIZED_SHARE = 0.5


@dataclass(frozen=True)
class Published:
    """A published checkpoint of the family, with its published scores and where they come from."""

    hub_id: str
    what: str  # "R1-AQA: GRPO on AVQA", "Instruct", ...
    mmau: str  # MMAU test-mini accuracy and the file version it was measured on, or "—"
    mmar: str  # MMAR accuracy, or "—"
    sources: str  # where the figures are published
    license: str


@dataclass(frozen=True)
class Family:
    """One model family. Subclasses (one module each) fill in the fields and override the methods that differ."""

    name: str  # the --family value: "qwen2-audio", "qwen2.5-omni", "qwen3-omni", "audio-flamingo-3"
    title: str  # for people: "Qwen2-Audio"
    model_types: tuple[str, ...]  # config.model_type values of its checkpoints (an Omni checkpoint or its thinker)
    audio_keys: tuple[str, ...]  # the processor outputs that carry the audio to the model's forward
    heard_seconds: float  # the longest clip the processor and encoder take in one piece; longer clips are cut
    audio_tokens_per_second: float  # audio placeholder tokens per second of clip (for length estimates)
    keep_unquantized: tuple[str, ...]  # module-name prefixes 4/8-bit keep in bf16 (encoders, projector, head)
    published: tuple[Published, ...]  # the checkpoints `aqa models` lists

    # What loads a checkpoint for text answers (an Omni model's thinker only: no talker weights in memory).
    def model_class(self) -> type[PreTrainedModel]:
        raise NotImplementedError

    def answering_config(self, config: PretrainedConfig) -> PretrainedConfig:
        """The config of the part that answers in text: the checkpoint's own, or an Omni checkpoint's thinker's."""
        return config

    def reset_for_generation(self, hf: PreTrainedModel) -> None:
        """Forget per-batch state the model keeps between calls before `generate` runs from a prefilled cache."""

    def thinking_style(self, config: PretrainedConfig, processor: ProcessorMixin) -> str:
        """'native' for a checkpoint that reasons before it answers whatever the prompt asks, else 'none'."""
        return "none"

    def audio_content(self, name: str) -> dict:
        """The audio's entry in a chat message; `name` is only a label, never fetched. Qwen2-Audio's 2024 template
        renders the placeholder only for an entry with an `audio_url` (or `audio`) key, so every entry has one."""
        return {"type": "audio", "audio_url": name}

    # Random weights: the tiny checkpoint every test runs on, and the full-size architecture for benchmarks.
    def build_tokenizer(self) -> PreTrainedTokenizerBase:
        """A byte-level tokenizer with the family's special tokens (aqa.families.tokenizers)."""
        raise NotImplementedError

    def build_processor(self, tokenizer: PreTrainedTokenizerBase) -> ProcessorMixin:
        """The family's real processor class with the published settings and chat template, around `tokenizer`."""
        raise NotImplementedError

    def build_config(self, tokenizer: PreTrainedTokenizerBase, size: str) -> PretrainedConfig:
        """The answering model's config at "tiny" or "full" (published) size, its special ids `tokenizer`'s."""
        raise NotImplementedError

    def build_generation_config(self, tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
        raise NotImplementedError

    def checkpoint_model(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
        """What a tiny checkpoint saves: the answering model itself, or an Omni model holding it beside a talker,
        so that loading a tiny checkpoint takes the real model's path."""
        return model


@dataclass(frozen=True)
class Parameters:
    """Parameter counts of a model that answers (an Omni checkpoint's thinker)."""

    total: int
    quantized: int  # in the layers bitsandbytes quantizes in 4/8-bit (nn.Linear outside keep_unquantized)
    encoder: int  # the audio encoder's
    decoder_layers: int  # the language model's decoder layers'
    decoder_quantized: int  # of those, in layers bitsandbytes quantizes

    def weight_bytes(self, precision: str) -> float:
        """Bytes of weights in `precision` (what bitsandbytes leaves stays in bf16)."""
        if precision in ("4bit", "8bit"):
            return self.quantized * BYTES_PER_PARAM[precision] + (self.total - self.quantized) * BYTES_PER_PARAM["bf16"]
        return self.total * BYTES_PER_PARAM[precision]

    @property
    def quantizes_well(self) -> bool:
        """Whether 4/8-bit is worth offering: most of the decoder layers' weights are in layers it quantizes."""
        return self.decoder_quantized >= MIN_QUANTIZED_SHARE * self.decoder_layers


def whole_checkpoint(whole_class: type[PreTrainedModel], config: PretrainedConfig, thinker: PreTrainedModel):
    """An Omni model of `config` (thinker, and talker if it has one) whose thinker holds `thinker`'s weights: what a
    tiny Omni checkpoint saves, so that loading it takes the published checkpoints' path."""
    whole = whole_class(config)
    whole.thinker.load_state_dict(thinker.state_dict())
    whole.generation_config = thinker.generation_config
    return whole


def family_parameters(family: Family, config: PretrainedConfig) -> Parameters:
    """The parameter counts of the answering model that `config` describes, counted on the meta device: exact for
    any family, and nothing is allocated."""
    with torch.device("meta"):
        model = family.model_class()._from_config(family.answering_config(config))
    linear = {
        name: module.weight.numel()
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not name.startswith(family.keep_unquantized)
    }
    decoder = model.get_decoder().layers
    decoder_names = {f"{name}." for name, module in model.named_modules() if module is decoder}
    return Parameters(
        total=sum(parameter.numel() for parameter in model.parameters()),
        quantized=sum(linear.values()),
        encoder=sum(parameter.numel() for parameter in model.model.audio_tower.parameters()),
        decoder_layers=sum(parameter.numel() for parameter in decoder.parameters()),
        decoder_quantized=sum(count for name, count in linear.items() if name.startswith(tuple(decoder_names))),
    )
