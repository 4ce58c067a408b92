"""GRPO post-training of Qwen2-Audio on multiple-choice audio questions: R1-AQA's recipe on TRL.

A recipe (YAML) sets every hyper-parameter; any field can be overridden on the command line.

    # CPU smoke run on the tiny random checkpoint (`python -m aqa tiny tiny-model`)
    python -m train.grpo --config train/recipes/grpo_tiny.yaml --model_name_or_path tiny-model \\
        --train_file data/avqa_train.jsonl --output_dir runs/tiny

    # one 24 GB GPU: QLoRA on the language model
    python -m train.grpo --config train/recipes/grpo_qlora_24gb.yaml --train_file data/avqa_train.jsonl

    # the paper's run: 8 GPUs, DeepSpeed ZeRO-3 with CPU offload (pip install deepspeed)
    accelerate launch --config_file train/recipes/accelerate_zero3.yaml -m train.grpo \\
        --config train/recipes/grpo_paper.yaml --train_file data/avqa_train.jsonl

Several nodes: the same command on every node, adding `--num_machines N --num_processes 8N --machine_rank R
--main_process_ip HOST0 --main_process_port 29500` after `accelerate launch`.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import datasets
import torch
import transformers
from accelerate import PartialState
from peft import PeftModel
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration, set_seed
from trl import get_peft_config

from aqa.errors import AQAError
from aqa.model import first_line, load_kwargs
from aqa.prompt import build_messages
from train.config import AUDIO_ENCODER, AudioGRPOConfig, AudioModelConfig, DataArguments, log_config, parse_config
from train.data import Example, load_examples
from train.rewards import get_reward_funcs
from train.trainer import AudioGRPOTrainer

logger = logging.getLogger("train.grpo")
CONFIG_CLASSES = (DataArguments, AudioGRPOConfig, AudioModelConfig)
# Optional logging backends (`--report_to`): the packages any of which each one needs
LOGGING_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "trackio": ("trackio",)}


class UsageError(Exception):
    """A problem the user can fix (no data, a bad path): shown as one line, without a traceback."""


def main(argv: list[str] | None = None) -> None:
    data_args, training_args, model_args = parse_config(CONFIG_CLASSES, argv)
    setup_logging(training_args)
    if training_args.should_log:
        log_config(data_args, model_args, training_args, path=Path(training_args.output_dir) / "run_config.json")
    log_layout(training_args)
    set_seed(training_args.seed)
    checkpoint = resume_checkpoint(training_args)
    check_report_to(training_args)

    # --- data: one prompt per question; the audio path rides inside the prompt's audio entry ---------------------
    dataset = get_dataset(data_args)

    # --- rewards, model, processor ---------------------------------------------------------------------------------
    reward_funcs = get_rewards(training_args.reward_funcs)
    model = get_model(model_args)
    processor = get_processor(model_args)

    # --- train -------------------------------------------------------------------------------------------------------
    trainer = AudioGRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=checkpoint)

    # --- save: a directory `aqa ask --model OUTPUT_DIR` loads --------------------------------------------------------
    save_final(trainer, model_args, training_args)
    logger.info("model and processor saved in %s", training_args.output_dir)


def setup_logging(training_args: AudioGRPOConfig) -> None:
    """INFO from this package on the main process (skipped rows, the config); libraries as TRL/transformers set."""
    level = logging.INFO if training_args.should_log else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("train").setLevel(level)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    datasets.utils.logging.set_verbosity(training_args.get_process_log_level())


def log_layout(training_args: AudioGRPOConfig) -> None:
    state = PartialState()
    groups = training_args.generation_batch_size // training_args.num_generations
    logger.info(
        "%d process(es), %s on %s; each generation: %d prompt(s) x %d completions",
        state.num_processes,
        state.distributed_type,
        state.device.type,
        groups,
        training_args.num_generations,
    )


def get_dataset(data_args: DataArguments) -> datasets.Dataset:
    """The training rows; bad rows (missing/corrupt audio, answer not among the choices) are skipped and logged."""
    if not data_args.train_file:
        raise UsageError("give the training data with --train_file DATA.jsonl (see `python -m train.prepare_avqa`)")
    if not Path(data_args.train_file).is_file():
        raise UsageError(f"{data_args.train_file}: no such file")
    examples, _ = load_examples(data_args.train_file, data_args.data_options())
    if not examples:
        raise UsageError(f"{data_args.train_file}: no usable rows (every row was skipped, see the log)")
    return datasets.Dataset.from_list([to_row(example, data_args.think) for example in examples])


def to_row(example: Example, think: bool) -> dict:
    """A GRPO row: the chat prompt (audio entry first) and the columns the rewards read."""
    return {
        "prompt": build_messages(example.question, example.options, think, audio_url=example.audio_path),
        "answer": example.answer,  # the correct option's text, read by accuracy_reward
        "options": list(example.options),
        "id": example.id,
    }


def get_rewards(names: list[str]) -> list:
    try:
        return get_reward_funcs(names)
    except ValueError as error:
        raise UsageError(str(error)) from None


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


def resume_checkpoint(training_args: AudioGRPOConfig) -> str | bool | None:
    """`--resume_from_checkpoint DIR`, or `true`/`last` for the newest checkpoint in output_dir."""
    value = training_args.resume_from_checkpoint
    if value is not None and value.lower() in ("true", "last"):
        return True
    if value is not None and not Path(value).is_dir():
        raise UsageError(f"{value}: no such checkpoint directory")
    return value


def check_report_to(training_args: AudioGRPOConfig) -> None:
    """A logging backend that is not installed fails now, in one line, not after the model has loaded."""
    for backend in training_args.report_to or []:
        packages = LOGGING_PACKAGES.get(backend, ())
        if packages and not any(installed(package) for package in packages):
            raise UsageError(f"--report_to {backend} needs the {backend} package: pip install {backend}")


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def save_final(trainer: AudioGRPOTrainer, model_args: AudioModelConfig, training_args: AudioGRPOConfig) -> None:
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


def run(argv: list[str] | None = None) -> int:
    """`python -m train.grpo`: user errors print one line on stderr and exit 2."""
    try:
        main(argv)
    except (UsageError, AQAError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run())
