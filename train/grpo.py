"""GRPO post-training of an audio model on multiple-choice audio questions: R1-AQA's recipe on TRL, for Qwen2-Audio
(R1-AQA's base) and every other supported family (the Qwen2.5-Omni and Qwen3-Omni thinkers, Audio Flamingo 3).

A recipe (YAML) sets every hyper-parameter; any field can be overridden on the command line.

    # CPU smoke run on the tiny random checkpoint (`python -m aqa tiny tiny-model`)
    python -m train.grpo --config train/recipes/grpo_tiny.yaml --model_name_or_path tiny-model \\
        --train_file data/avqa_train.jsonl --output_dir runs/tiny

    # one 24 GB GPU: QLoRA on the language model
    python -m train.grpo --config train/recipes/grpo_qlora_24gb.yaml --train_file data/avqa_train.jsonl

    # the paper's run: 8 GPUs, DeepSpeed ZeRO-3 with CPU offload (pip install deepspeed)
    accelerate launch --config_file train/recipes/accelerate_zero3.yaml -m train.grpo \\
        --config train/recipes/grpo_paper.yaml --train_file data/avqa_train.jsonl

    # another family: its recipes in train/recipes/<family>/ (R1-AQA's run on 8 GPUs, and one GPU)
    python -m train.grpo --config train/recipes/qwen2.5-omni/grpo_qlora.yaml --train_file data/avqa_train.jsonl

Several nodes: the same command on every node, adding `--num_machines N --num_processes 8N --machine_rank R
--main_process_ip HOST0 --main_process_port 29500` after `accelerate launch`.

Add `--eval_file dev.json` to answer a dev set at every checkpoint (accuracy logged as eval_accuracy), and
`--resume_from_checkpoint true` to continue a stopped run from its newest checkpoint (docs/training.md).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import datasets
from accelerate import PartialState
from transformers import set_seed

from aqa.prompt import build_messages
from train.checkpoints import resume_checkpoint
from train.common import (
    check_model,
    check_report_to,
    check_settings,
    get_eval_set,
    get_examples,
    get_lora_config,
    get_model,
    get_processor,
    run_main,
    save_final,
    set_up_evaluation,
    setup_logging,
)
from train.config import AudioGRPOConfig, AudioModelConfig, DataArguments, log_config, parse_config
from train.data import Example
from train.errors import UsageError
from train.rewards import get_reward_funcs
from train.trainer import AudioGRPOTrainer

logger = logging.getLogger("train.grpo")
CONFIG_CLASSES = (DataArguments, AudioGRPOConfig, AudioModelConfig)


def main(argv: list[str] | None = None) -> None:
    data_args, training_args, model_args = parse_config(CONFIG_CLASSES, argv)
    setup_logging(training_args)
    # --- settings: what cannot work fails now, in one line, before anything loads --------------------------------
    check_settings(training_args)
    set_up_evaluation(data_args, training_args)
    checkpoint = resume_checkpoint(training_args, model_args)
    check_report_to(training_args)
    check_model(model_args)  # a wrong path, a model of no supported family, no Hub: one line now
    if training_args.should_log:
        log_config(data_args, model_args, training_args, path=Path(training_args.output_dir) / "run_config.json")
    log_layout(training_args)
    set_seed(training_args.seed)

    # --- data: one prompt per question; the audio path rides inside the prompt's audio entry ---------------------
    dataset = get_dataset(data_args)
    check_steps(len(dataset), training_args)
    eval_set = get_eval_set(data_args)

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
        peft_config=get_lora_config(model_args, model),
        audio_channel=data_args.audio_channel,
        eval_set=eval_set,
    )
    trainer.train(resume_from_checkpoint=checkpoint)

    # --- save: a directory `aqa ask --model OUTPUT_DIR` loads --------------------------------------------------------
    save_final(trainer, model_args, training_args)
    logger.info("model and processor saved in %s", training_args.output_dir)


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


def check_steps(rows: int, training_args: AudioGRPOConfig) -> None:
    """Stop, before the model loads, a run that would make no optimizer step (and still save a model, exit 0).

    TRL's sampler hands out the prompts of one generation at a time, `generation_batch_size / num_generations` of
    them across all processes, and drops a last group smaller than that: with fewer rows it yields nothing."""
    prompts = training_args.generation_batch_size // training_args.num_generations
    if rows < prompts:
        raise UsageError(
            f"{rows} training row(s) make no optimizer step: one step takes {prompts} prompts "
            f"({training_args.world_size} process(es) x per_device_train_batch_size "
            f"{training_args.per_device_train_batch_size} completions x steps_per_generation "
            f"{training_args.steps_per_generation} / num_generations {training_args.num_generations}); give at least "
            f"{prompts} rows, or use fewer processes or a smaller per_device_train_batch_size"
        )


def get_dataset(data_args: DataArguments) -> datasets.Dataset:
    """One GRPO row per usable example (see `train.common.get_examples` for what is skipped)."""
    return datasets.Dataset.from_list([to_row(example, data_args.think) for example in get_examples(data_args)])


def to_row(example: Example, think: bool) -> dict:
    """A GRPO row: the chat prompt (audio entry first) and the columns the rewards read."""
    return {
        "prompt": build_messages(example.question, example.options, think, audio_url=example.audio_path),
        "answer": example.answer,  # the correct option's text, read by accuracy_reward
        "options": list(example.options),
        "id": example.id,
        "think": think,  # which format the format rewards hold the completion to (R1-AQA's think-mode pattern)
    }


def get_rewards(names: list[str]) -> list:
    try:
        return get_reward_funcs(names)
    except ValueError as error:
        raise UsageError(str(error)) from None


def run(argv: list[str] | None = None) -> int:
    """`python -m train.grpo`: user errors print one line on stderr and exit 2."""
    return run_main(main, argv)


if __name__ == "__main__":
    sys.exit(run())
