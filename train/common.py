"""What GRPO and SFT share beyond data: loading the policy and processor, logging, resuming, saving, the CLI wrapper.

Both trainers load, save and fail the same way, so an SFT run and a GRPO run differ only in their objective.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import datasets
import torch
import transformers
from accelerate import PartialState
from peft import PeftModel
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration, Trainer, TrainingArguments

from aqa.errors import AQAError, first_line
from aqa.model import load_kwargs
from train.config import AUDIO_ENCODER, AudioModelConfig, DataArguments
from train.data import Example, load_examples

# Optional logging backends (`--report_to`): the packages any of which each one needs
LOGGING_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "trackio": ("trackio",)}


class UsageError(Exception):
    """A problem the user can fix (no data, a bad path): shown as one line, without a traceback."""


def get_examples(data_args: DataArguments) -> list[Example]:
    """The training examples; bad rows (missing/corrupt audio, answer not among the choices) skipped and logged."""
    train_file = data_args.train_file
    if not train_file:
        raise UsageError("give the training data with --train_file DATA.jsonl (see `python -m train.prepare_avqa`)")
    if not Path(train_file).is_file():
        raise UsageError(f"{train_file}: no such training file (make it with python -m train.prepare_avqa)")
    examples, skipped = load_examples(train_file, data_args.data_options())
    if not examples:
        raise UsageError(f"{train_file}: no usable rows (skipped: {dict(skipped)})")
    return examples


def setup_logging(training_args: TrainingArguments) -> None:
    """INFO from this package on the main process (skipped rows, the config); libraries as TRL/transformers set."""
    level = logging.INFO if training_args.should_log else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("train").setLevel(level)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    datasets.utils.logging.set_verbosity(training_args.get_process_log_level())


def get_model(model_args: AudioModelConfig) -> Qwen2AudioForConditionalGeneration:
    """The policy, in the recipe's dtype; 4/8-bit quantize only the language model (as `aqa.load_model` does)."""
    kwargs = {"revision": model_args.model_revision, "attn_implementation": model_args.attn_implementation}
    if model_args.load_in_4bit or model_args.load_in_8bit:
        kwargs.update(load_kwargs("4bit" if model_args.load_in_4bit else "8bit"))
        kwargs["device_map"] = {"": PartialState().device}  # quantized weights are placed at load, one copy per GPU
    else:
        dtype = model_args.dtype
        kwargs["dtype"] = dtype if dtype in ("auto", None) else getattr(torch, dtype)
    try:
        model = Qwen2AudioForConditionalGeneration.from_pretrained(model_args.model_name_or_path, **kwargs)
    except OSError as error:
        raise UsageError(f"cannot load {model_args.model_name_or_path}: {first_line(error)}") from None
    if model_args.freeze_audio_encoder:
        model.get_submodule(AUDIO_ENCODER).requires_grad_(False)
    return model


def get_processor(model_args: AudioModelConfig):
    processor = AutoProcessor.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision)
    processor.tokenizer.padding_side = "left"  # generation continues prompts, so they are left-padded
    return processor


def resume_checkpoint(training_args: TrainingArguments) -> str | bool | None:
    """`--resume_from_checkpoint DIR`, or `true`/`last` for the newest checkpoint in output_dir."""
    value = training_args.resume_from_checkpoint
    if value is not None and value.lower() in ("true", "last"):
        return True
    if value is not None and not Path(value).is_dir():
        raise UsageError(f"{value}: no such checkpoint directory")
    return value


def check_report_to(training_args: TrainingArguments) -> None:
    """A logging backend that is not installed fails now, in one line, not after the model has loaded."""
    for backend in training_args.report_to or []:
        packages = LOGGING_PACKAGES.get(backend, ())
        if packages and not any(installed(package) for package in packages):
            raise UsageError(f"--report_to {backend} needs the {backend} package: pip install {backend}")


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def save_final(trainer: Trainer, model_args: AudioModelConfig, training_args: TrainingArguments) -> None:
    """Model and processor in output_dir. With LoRA the adapter goes to output_dir/adapter and, unless
    merge_adapter is off, the merged full model to output_dir."""
    output_dir = Path(training_args.output_dir)
    if not isinstance(trainer.model, PeftModel):
        trainer.save_model(str(output_dir))  # gathers ZeRO-3 shards; writes the processor beside the weights
        return
    trainer.save_model(str(output_dir / "adapter"))
    if training_args.merge_adapter and trainer.accelerator.is_main_process:
        merge_adapter(model_args, output_dir / "adapter", output_dir)
        trainer.processing_class.save_pretrained(str(output_dir))
    trainer.accelerator.wait_for_everyone()


def merge_adapter(model_args: AudioModelConfig, adapter_dir: Path, output_dir: Path) -> None:
    """Fold a LoRA adapter into an unquantized copy of the base model (on the CPU: ~17 GB of RAM for 8.4B in bf16)."""
    dtype = torch.float32 if model_args.dtype == "float32" else torch.bfloat16
    base = Qwen2AudioForConditionalGeneration.from_pretrained(
        model_args.model_name_or_path, revision=model_args.model_revision, dtype=dtype
    )
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(output_dir))


def run_main(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> int:
    """Run a training `main`: user errors print one line on stderr and exit 2."""
    try:
        main(argv)
    except (UsageError, AQAError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
