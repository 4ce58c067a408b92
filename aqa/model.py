"""Loading R1-AQA or any Qwen2-Audio checkpoint in bf16, fp32, 4-bit or 8-bit, on the GPU or the CPU."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoProcessor,
    BitsAndBytesConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
)

from aqa.defaults import DEFAULT_MODEL, PRECISIONS
from aqa.errors import ModelError, first_line
from aqa.hub import check_model_reference

# bitsandbytes' skip list replaces its default one and matches full module names from their start ("audio_tower"
# would not match "model.audio_tower"): the audio encoder, the projector and the output head stay in bf16; only the
# language model is quantized.
KEEP_UNQUANTIZED = ["model.audio_tower", "model.multi_modal_projector", "lm_head"]
# The torch dtype of each unquantized precision (4/8-bit keep their unquantized parts in bf16).
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# Bytes per parameter of the quantizable layers (NF4 with double quantization costs ~0.516 bytes), for the memory
# check before loading; embeddings, encoder, projector and head stay at 2 bytes in 4/8-bit.
BYTES_PER_PARAM = {"bf16": 2.0, "fp16": 2.0, "fp32": 4.0, "4bit": 0.516, "8bit": 1.0}
# Precisions whose input embedding stays in CPU memory on a GPU by default (see HostEmbedding): those chosen to save
# GPU memory.
EMBEDDINGS_ON_CPU = ("4bit", "8bit")
# How generated tokens are decoded: "eager" (generate with a growing DynamicCache), "static" (a preallocated
# StaticCache, uncompiled: for tests), "compiled" (a StaticCache and the decode step under torch.compile, CUDA graphs
# on a GPU). bitsandbytes layers cannot be compiled, and the CPU lookup of HostEmbedding cannot sit in a CUDA graph.
DECODERS = ("eager", "static", "compiled")


@dataclass(frozen=True)
class AQAModel:
    """A loaded checkpoint: the model, its processor, and how it was loaded."""

    hf: Qwen2AudioForConditionalGeneration  # the Hugging Face model
    processor: Qwen2AudioProcessor
    name: str  # the id or path it was loaded from
    precision: str  # one of PRECISIONS
    device: torch.device  # where inputs go
    decoder: str = "eager"  # one of DECODERS

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def stop_token_ids(self) -> list[int]:
        """The tokens that end an answer: the checkpoint's generation config's end-of-sequence ids."""
        stops = self.hf.generation_config.eos_token_id
        return stops if isinstance(stops, list) else [stops]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_precision(device: torch.device) -> str:
    # bf16 halves memory and is what R1-AQA was trained in; CPUs run fp32 much faster than bf16 matmuls.
    return "bf16" if device.type == "cuda" else "fp32"


def load_checkpoint(
    name_or_path: str = DEFAULT_MODEL,
    precision: str | None = None,
    device: str | torch.device | None = None,
    embeddings_on_cpu: bool | None = None,
    compile: bool | None = None,
) -> AQAModel:
    """Load a Qwen2-Audio checkpoint: `aqa.load_model` (aqa/loading.py, where the arguments are explained) without
    the warm-up of the compiled decoder, which needs the generation code above this module."""
    device = torch.device(device) if device is not None else default_device()
    precision = precision or default_precision(device)
    config = read_config(name_or_path, precision)
    check_memory(config, precision, device)
    try:
        processor = AutoProcessor.from_pretrained(name_or_path)
        model = Qwen2AudioForConditionalGeneration.from_pretrained(
            name_or_path, device_map={"": device}, **load_kwargs(precision)
        )
    except torch.OutOfMemoryError:
        raise ModelError(
            f"not enough {device.type.upper()} memory to load {name_or_path} in {precision}; try --precision 4bit"
        ) from None
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load {name_or_path}: {first_line(error)}") from None
    processor.tokenizer.padding_side = "left"  # batched generation continues every row from its last token
    model.eval()
    place_embeddings(model, precision, device, embeddings_on_cpu)
    decoder = choose_decoder(model, precision, device, compile)
    return AQAModel(model, processor, str(name_or_path), precision, device, decoder)


def choose_decoder(hf: Qwen2AudioForConditionalGeneration, precision: str, device: torch.device, compile: bool | None):
    """ "compiled" where it can be (asked for, or by default on a GPU in bf16/fp16), else "eager"."""
    hosted = isinstance(hf.get_input_embeddings(), HostEmbedding)
    if compile is None:
        return "compiled" if device.type == "cuda" and precision in ("bf16", "fp16") and not hosted else "eager"
    if compile and precision in ("4bit", "8bit"):
        raise ModelError(f"--compile cannot be used with {precision}: bitsandbytes layers cannot be compiled")
    if compile and hosted:
        raise ModelError("--compile cannot be used with --embeddings-on-cpu: a CPU lookup cannot run in a CUDA graph")
    return "compiled" if compile else "eager"


class HostEmbedding(nn.Module):
    """An input embedding whose table stays in CPU memory: ids are looked up there and only the vectors go to the GPU.

    A lookup reads a few rows (one per token), so the CPU does it in microseconds, while the table of Qwen2-Audio
    (156032 x 4096 in bf16) takes 1.2 GiB of GPU memory, a sixth of the model in 4-bit."""

    def __init__(self, embedding: nn.Embedding, device: torch.device):
        super().__init__()
        self.embedding = embedding.to("cpu")
        self.target = device

    @property
    def weight(self) -> torch.Tensor:
        return self.embedding.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids.cpu()).to(self.target)


def place_embeddings(
    hf: Qwen2AudioForConditionalGeneration, precision: str, device: torch.device, on_cpu: bool | None
) -> None:
    """Move the input embedding table to CPU memory (HostEmbedding) if `on_cpu`; None: in 4/8-bit on a GPU.

    Asked for explicitly, it is done on the CPU too (where it changes nothing but the module), so that the flag
    reaches the model the same way everywhere."""
    if on_cpu is None:
        on_cpu = precision in EMBEDDINGS_ON_CPU and device.type != "cpu"
    language_model = hf.model.language_model
    if on_cpu and not isinstance(language_model.embed_tokens, HostEmbedding):
        language_model.embed_tokens = HostEmbedding(language_model.embed_tokens, device)
        if device.type == "cuda":
            torch.cuda.empty_cache()


def read_config(name_or_path: str, precision: str):
    """Read the config first: it is cheap and gives clear errors before gigabytes are touched."""
    check_model_reference(name_or_path)  # a typo or an unreachable Hub: one line at once, no retries
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision in ("4bit", "8bit") and importlib.util.find_spec("bitsandbytes") is None:
        raise ModelError(f"--precision {precision} needs bitsandbytes: pip install bitsandbytes")
    looks_local = Path(name_or_path).exists() or str(name_or_path).startswith((".", "/", "~"))
    if looks_local and not Path(name_or_path).expanduser().is_dir():
        raise ModelError(f"{name_or_path}: no such model directory")
    if looks_local and not (Path(name_or_path).expanduser() / "config.json").is_file():
        raise ModelError(f"{name_or_path} is not a Qwen2-Audio checkpoint (no config.json in it)")
    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load {name_or_path}: {first_line(error)}") from None
    if config.model_type != "qwen2_audio":
        raise ModelError(f"{name_or_path} is not a Qwen2-Audio checkpoint (model_type {config.model_type!r})")
    return config


def load_kwargs(precision: str) -> dict:
    if precision == "4bit":
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
            llm_int8_skip_modules=KEEP_UNQUANTIZED,
        )
        return {"quantization_config": quantization, "dtype": torch.bfloat16}
    if precision == "8bit":
        quantization = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=KEEP_UNQUANTIZED)
        return {"quantization_config": quantization, "dtype": torch.bfloat16}
    return {"dtype": DTYPES[precision]}


def count_parameters(config) -> tuple[int, int]:
    """(all parameters, those in the language model's decoder layers) of a Qwen2-Audio config, from its shapes."""
    text, audio = config.text_config, config.audio_config
    head_dim = text.hidden_size // text.num_attention_heads
    kv = text.num_key_value_heads * head_dim
    attention = text.hidden_size * (2 * text.hidden_size + 2 * kv) + 2 * kv + text.hidden_size
    layers = text.num_hidden_layers * (attention + 3 * text.hidden_size * text.intermediate_size)
    encoder = audio.encoder_layers * (4 * audio.d_model**2 + 2 * audio.d_model * audio.encoder_ffn_dim)
    total = layers + 2 * text.vocab_size * text.hidden_size + encoder + audio.d_model * text.hidden_size
    return total, layers


def weight_bytes(config, precision: str) -> float:
    """Bytes the weights take in `precision`: 8.39B parameters give ~15.6 GiB in bf16 and ~6.7 GiB in 4-bit."""
    total, quantizable = count_parameters(config)
    if precision in ("4bit", "8bit"):
        return quantizable * BYTES_PER_PARAM[precision] + (total - quantizable) * 2.0
    return total * BYTES_PER_PARAM[precision]


def check_memory(config, precision: str, device: torch.device) -> None:
    """Fail early, with the numbers, when the device cannot hold the weights (rather than die half-way in)."""
    needed = weight_bytes(config, precision)
    free = available_memory(device)
    if free is not None and needed > free:
        where = "GPU memory" if device.type == "cuda" else "RAM"
        hint = "try --precision 4bit" if device.type == "cuda" else "use a GPU, or a machine with more RAM"
        raise ModelError(
            f"not enough {where} for this model in {precision}: about {needed / 2**30:.1f} GiB of weights, "
            f"{free / 2**30:.1f} GiB available; {hint}"
        )


def available_memory(device: torch.device) -> int | None:
    """Free bytes on the device: CUDA's own count, or MemAvailable from /proc/meminfo; None when unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as handle:
            fields = dict(line.split(":", 1) for line in handle)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
