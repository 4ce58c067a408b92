"""Loading a checkpoint of any supported family (R1-AQA and Qwen2-Audio, the Qwen2.5-Omni and Qwen3-Omni thinkers,
Audio Flamingo 3) in bf16, fp16, fp32, 4-bit or 8-bit, on the GPU or the CPU."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoProcessor, BitsAndBytesConfig, PreTrainedModel, ProcessorMixin

from aqa.defaults import DEFAULT_MODEL, PRECISIONS
from aqa.errors import ModelError, first_line
from aqa.families import Family, family_of, family_parameters
from aqa.hub import check_model_reference

# The torch dtype of each unquantized precision (4/8-bit keep their unquantized parts in bf16).
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# Precisions whose input embedding stays in CPU memory on a GPU by default (see HostEmbedding): those chosen to save
# GPU memory.
EMBEDDINGS_ON_CPU = ("4bit", "8bit")
# How generated tokens are decoded: "eager" (generate with a growing DynamicCache), "static" (a preallocated
# StaticCache, uncompiled: for tests), "compiled" (a StaticCache and the decode step under torch.compile, CUDA graphs
# on a GPU). bitsandbytes layers cannot be compiled, and the CPU lookup of HostEmbedding cannot sit in a CUDA graph.
DECODERS = ("eager", "static", "compiled")


@dataclass(frozen=True)
class AQAModel:
    """A loaded checkpoint: the model, its processor, its family, and how it was loaded."""

    hf: PreTrainedModel  # the Hugging Face model (an Omni checkpoint's thinker)
    processor: ProcessorMixin
    family: Family
    name: str  # the id or path it was loaded from
    precision: str  # one of PRECISIONS
    device: torch.device  # where inputs go
    decoder: str = "eager"  # one of DECODERS
    thinking: str = "none"  # "native" when the checkpoint's chat template reasons before answering (THINKING_STYLES)

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def heard_seconds(self) -> float:
        """The longest clip the model hears in one piece."""
        return self.family.heard_seconds

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
    """Load a checkpoint of any supported family: `aqa.load_model` (aqa/loading.py, where the arguments are
    explained) without the warm-up of the compiled decoder, which needs the generation code above this module."""
    device = torch.device(device) if device is not None else default_device()
    precision = precision or default_precision(device)
    config = read_config(name_or_path, precision)
    family = family_of(config.model_type)
    check_quantizable(config, precision)
    check_memory(config, precision, device)
    try:
        processor = AutoProcessor.from_pretrained(name_or_path)
        model = family.model_class().from_pretrained(
            name_or_path, device_map={"": device}, **load_kwargs(family, precision)
        )
    except torch.OutOfMemoryError:
        raise ModelError(
            f"not enough {device.type.upper()} memory to load {name_or_path} in {precision}; try --precision 4bit"
        ) from None
    except (OSError, ValueError, ImportError) as error:  # ImportError: the Omni processors need torchvision
        raise ModelError(f"cannot load {name_or_path}: {first_line(error)}") from None
    processor.tokenizer.padding_side = "left"  # batched generation continues every row from its last token
    model.eval()
    place_embeddings(model, precision, device, embeddings_on_cpu)
    decoder = choose_decoder(model, precision, device, compile)
    thinking = family.thinking_style(config, processor)
    return AQAModel(model, processor, family, str(name_or_path), precision, device, decoder, thinking)


def choose_decoder(hf: PreTrainedModel, precision: str, device: torch.device, compile: bool | None):
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

    A lookup reads a few rows (one per token), so the CPU does it in microseconds, while the table of R1-AQA
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


def place_embeddings(hf: PreTrainedModel, precision: str, device: torch.device, on_cpu: bool | None) -> None:
    """Move the input embedding table to CPU memory (HostEmbedding) if `on_cpu`; None: in 4/8-bit on a GPU.

    Asked for explicitly, it is done on the CPU too (where it changes nothing but the module), so that the flag
    reaches the model the same way everywhere."""
    if on_cpu is None:
        on_cpu = precision in EMBEDDINGS_ON_CPU and device.type != "cpu"
    if on_cpu and not isinstance(hf.get_input_embeddings(), HostEmbedding):
        hf.set_input_embeddings(HostEmbedding(hf.get_input_embeddings(), device))
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
        raise ModelError(f"{name_or_path} is not a model checkpoint (no config.json in it)")
    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError, KeyError) as error:  # KeyError: a model_type this transformers does not know
        raise ModelError(f"cannot load {name_or_path}: {first_line(error)}") from None
    family_of(config.model_type, name_or_path)  # refuses, in one line, a model of no supported family
    return config


def load_kwargs(family: Family, precision: str) -> dict:
    # bitsandbytes' skip list replaces its default one and matches full module names from their start ("audio_tower"
    # would not match "model.audio_tower"): each family names its encoders, projector and output head, which stay in
    # bf16; the language model is quantized (its nn.Linear layers: fused MoE experts are not, and stay in bf16).
    keep = list(family.keep_unquantized)
    if precision == "4bit":
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
            llm_int8_skip_modules=keep,
        )
        return {"quantization_config": quantization, "dtype": torch.bfloat16}
    if precision == "8bit":
        quantization = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=keep)
        return {"quantization_config": quantization, "dtype": torch.bfloat16}
    return {"dtype": DTYPES[precision]}


def weight_bytes(config, precision: str) -> float:
    """Bytes the weights of the answering model take in `precision`, counted from the config: R1-AQA's 8.40B
    parameters give ~15.6 GiB in bf16 and ~6.7 GiB in 4-bit."""
    return family_parameters(family_of(config.model_type), config).weight_bytes(precision)


def check_quantizable(config, precision: str) -> None:
    """Refuse 4/8-bit, in one line with the numbers, for a model bitsandbytes would leave mostly unquantized."""
    if precision not in ("4bit", "8bit"):
        return
    family = family_of(config.model_type)
    counts = family_parameters(family, config)
    if not counts.quantizes_well:
        raise ModelError(
            f"{family.title} cannot be loaded in {precision}: bitsandbytes quantizes only linear layers, "
            f"{counts.decoder_quantized / 1e9:.1f}B of its decoder layers' {counts.decoder_layers / 1e9:.1f}B "
            f"parameters (the rest are fused expert weights), so {precision} would still need "
            f"{counts.weight_bytes(precision) / 2**30:.1f} GiB against {counts.weight_bytes('bf16') / 2**30:.1f} "
            "GiB in bf16; use --precision bf16"
        )


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
