"""Supervised fine-tuning baseline: the paper's comparison point for GRPO, on the same AVQA JSONL and the same prompt.

Each question becomes R1-AQA's exact chat prompt (`aqa.build_messages` + the processor's chat template, the audio
through `aqa.load_audio`, tokenized by the collation GRPO uses) followed by the target
`<answer>{correct option}</answer><|im_end|>`, i.e. what the model should emit; the loss covers those target tokens
only (labels are -100 on the system turn, the audio, the question and the padding). Full fine-tuning, or LoRA on the
language model's linear layers only (`--use_peft true`). The model, data and LoRA options are GRPO's
(`train/config.py`), so the two runs differ only in the objective. Any supported family trains
(`--model_name_or_path`: Qwen2-Audio, the Qwen2.5-Omni and Qwen3-Omni thinkers, Audio Flamingo 3); a
mixture-of-experts model (Qwen3-Omni) adds its router's load-balancing loss, as GRPO does.

    # CPU smoke run on the tiny random checkpoint (`python -m aqa tiny tiny-model`)
    python -m train.sft --config train/recipes/sft_tiny_cpu.yaml --model_name_or_path tiny-model \
        --train_file data/avqa_train.jsonl --output_dir runs/sft-tiny

    # one 80 GB GPU: LoRA on the language model (--load_in_4bit true: QLoRA)
    python -m train.sft --config train/recipes/sft_avqa_lora.yaml --train_file data/avqa_train.jsonl

    # 8 GPUs: full fine-tune with DeepSpeed ZeRO-3 (pip install deepspeed)
    accelerate launch --config_file train/recipes/accelerate_zero3.yaml -m train.sft \
        --config train/recipes/sft_avqa_full.yaml --train_file data/avqa_train.jsonl

Every field of the recipe can be overridden on the command line (`--learning_rate 1e-5 --max_steps 100`). The final
model and processor are saved in --output_dir (with LoRA: the adapter in output_dir/adapter and the merged model in
output_dir), so `python -m aqa ask --model OUTPUT_DIR ...` loads it like any checkpoint of its family.
Built on the HF Trainer with an audio collator rather than TRL's SFTTrainer: the prompt must be tokenized exactly as
at inference (audio features included), and the answer-only labels stay in plain view here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from transformers import Trainer, TrainingArguments, set_seed

from aqa.audio import load_audio
from aqa.families import Family, family_of
from aqa.prompt import build_messages
from train.checkpoints import resume_checkpoint
from train.common import (
    AudioTrainerHooks,
    check_model,
    check_report_to,
    check_settings,
    get_eval_set,
    get_examples,
    get_lora_config,
    get_model,
    get_processor,
    router_aux_loss_coef,
    run_main,
    save_final,
    set_up_evaluation,
    setup_logging,
)
from train.config import AudioModelConfig, DataArguments, SaveArguments, log_config, parse_config
from train.data import Example, check_audio_rows, collate_audio
from train.errors import UsageError
from train.evaluation import EvalSet

IGNORE_INDEX = -100  # label of every position the loss skips (PyTorch's cross-entropy default)
END_OF_TURN = "<|im_end|>"  # Qwen's end of an assistant turn: the model emits it after the answer, then stops


@dataclass
class SFTConfig(TrainingArguments, SaveArguments):
    """The HF Trainer's arguments, plus how a LoRA run is saved (as in GRPO's config)."""

    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: the audio collator reads fields the model's forward lacks."}
    )
    router_aux_loss_coef: float | None = field(
        default=None,
        metadata={
            "help": "Weight of a mixture-of-experts model's load-balancing loss (Qwen3-Omni), as GRPO's option of the "
            "same name: by default the model config's router_aux_loss_coef (0.001 for Qwen3-Omni); 0 leaves it out."
        },
    )


CONFIG_CLASSES = (DataArguments, SFTConfig, AudioModelConfig)


def answer_target(answer: str) -> str:
    """What the model should emit for a question: the released model's answer-only format, then end of turn."""
    return f"<answer>{answer}</answer>{END_OF_TURN}"


class AudioQuestions(Dataset):
    """Examples with their audio decoded on access (in DataLoader workers when dataloader_num_workers > 0).

    channel "first" keeps a multi-channel clip's first channel, as R1-AQA's data loader did."""

    def __init__(self, examples: list[Example], channel: str = "first"):
        self.examples = examples
        self.channel = channel

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        return {"example": example, "samples": load_audio(example.audio_path, self.channel)}


@dataclass(frozen=True)
class AnswerCollator:
    """Prompt tokens exactly as at inference, then the target tokens; labels only on the target; right padding."""

    processor: object  # the checkpoint's processor
    family: Family
    features_dtype: torch.dtype = torch.float32  # the model's dtype: some audio encoders do not cast their input

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        """input_ids, attention_mask, labels and the audio kept by row (`Family.audio_by_row`)."""
        examples = [item["example"] for item in items]
        conversations = [build_messages(e.question, e.options, audio_url=e.audio_path) for e in examples]
        prompts = collate_audio(self.processor, self.family, conversations, [item["samples"] for item in items])
        tokenizer = self.processor.tokenizer
        # Tokenized apart from the prompt, so the boundary is exactly where generation starts at inference.
        targets = [tokenizer(answer_target(e.answer), add_special_tokens=False)["input_ids"] for e in examples]
        rows = [
            (ids[mask.bool()].tolist() + target, [IGNORE_INDEX] * int(mask.sum()) + target)  # left padding dropped
            for ids, mask, target in zip(prompts["input_ids"], prompts["attention_mask"], targets)
        ]
        width = max(len(ids) for ids, _ in rows)
        return {
            "input_ids": torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in rows]),
            "attention_mask": torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows]),
            "labels": torch.tensor([labels + [IGNORE_INDEX] * (width - len(labels)) for _, labels in rows]),
            **{
                key: prompts[key].to(self.features_dtype) if prompts[key].is_floating_point() else prompts[key]
                for key in self.family.audio_keys
            },
        }


def answer_loss(outputs, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
    """Cross-entropy of the target tokens only, summed, over the number of target tokens in the accumulated batch.

    The models' own loss is a per-micro-batch mean that ignores `num_items_in_batch` (Qwen2-Audio's), yet the Trainer
    (seeing `**kwargs` in its forward) would treat it as already scaled for gradient accumulation: this function is
    the token-weighted loss the Trainer expects. Only target positions are gathered, so the full-vocabulary logits of
    the prompt are never upcast.
    """
    targets = labels[:, 1:].to(outputs.logits.device)  # position t predicts token t + 1
    keep = targets != IGNORE_INDEX
    total = F.cross_entropy(outputs.logits[:, :-1][keep].float(), targets[keep], reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else keep.sum()
    return total / count


class AudioSFTTrainer(AudioTrainerHooks, Trainer):
    """The HF Trainer with the hooks GRPO's trainer shares (strict resume, saved config, aqa evaluation), a check
    that every row of a batch carries its own clip's features, and a mixture-of-experts model's load-balancing loss.
    """

    def __init__(self, model, *args, eval_set: EvalSet | None = None, **kwargs):
        if kwargs.get("args") is not None:
            check_settings(kwargs["args"])
        self.remember_loaded_config(model)
        self.eval_set = eval_set
        self.family = family_of(model.config.model_type)
        self._audio_token_id = model.config.audio_token_id
        super().__init__(model, *args, eval_dataset=eval_set, **kwargs)
        coef = getattr(self.args, "router_aux_loss_coef", None)
        self.router_aux_loss_coef = router_aux_loss_coef(model) if coef is None else coef

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        audio = {key: inputs[key] for key in self.family.audio_keys}
        check_audio_rows(inputs["input_ids"], audio, self.family, self._audio_token_id)
        inputs = {key: value for key, value in inputs.items() if key not in audio} | self.family.model_audio(audio)
        if self.router_aux_loss_coef:
            inputs["output_router_logits"] = True
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if self.router_aux_loss_coef:
            # The model adds the weighted load-balancing loss to its own loss only when it gets the labels, which the
            # Trainer keeps for `answer_loss`: added here, once per micro-batch and, in training, divided by the
            # accumulation steps, as TRL's GRPO adds it.
            steps = getattr(self, "current_gradient_accumulation_steps", 1) if model.training else 1
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss / steps
        return (loss, outputs) if return_outputs else loss


def get_answer_examples(data_args: DataArguments) -> list[Example]:
    if data_args.think:
        raise UsageError("SFT imitates answer-only targets: there is no reasoning to imitate with --think")
    return get_examples(data_args)


def check_steps(rows: int, training_args: SFTConfig) -> None:
    """Stop, before the model loads, a run that would make no optimizer step (and still save a model, exit 0): with
    `dataloader_drop_last` a batch of fewer than per_device_train_batch_size rows per process is dropped. Without it
    the last batch is kept, padded across processes by accelerate, so any row trains."""
    batch = training_args.per_device_train_batch_size * training_args.world_size
    if training_args.dataloader_drop_last and rows < batch:
        raise UsageError(
            f"{rows} training row(s) make no optimizer step: with --dataloader_drop_last a step takes {batch} rows "
            f"({training_args.world_size} process(es) x per_device_train_batch_size "
            f"{training_args.per_device_train_batch_size}); give at least {batch} rows, or use fewer processes or a "
            "smaller per_device_train_batch_size"
        )


def check_tokenizer(processor) -> None:
    tokenizer = processor.tokenizer
    if tokenizer.convert_tokens_to_ids(END_OF_TURN) in (None, tokenizer.unk_token_id):
        raise UsageError(f"the tokenizer has no {END_OF_TURN} token, which ends every answer in the supported families")


def main(argv: list[str] | None = None) -> None:
    data_args, training_args, model_args = parse_config(CONFIG_CLASSES, argv)
    setup_logging(training_args)
    # --- settings: what cannot work fails now, in one line, before anything loads --------------------------------
    check_settings(training_args)
    set_up_evaluation(data_args, training_args)
    checkpoint = resume_checkpoint(training_args, model_args)
    check_report_to(training_args)
    family = check_model(model_args)  # a wrong path, a model of no supported family, no Hub: one line now
    if training_args.should_log:
        log_config(data_args, model_args, training_args, path=Path(training_args.output_dir) / "run_config.json")
    set_seed(training_args.seed)

    # --- data and model ----------------------------------------------------------------------------------------------
    examples = get_answer_examples(data_args)
    check_steps(len(examples), training_args)
    eval_set = get_eval_set(data_args)
    processor = get_processor(model_args)
    check_tokenizer(processor)
    model = get_model(model_args)
    peft_config = get_lora_config(model_args, model)
    if peft_config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config)
        if training_args.activation_checkpointing:
            model.enable_input_require_grads()  # frozen embeddings: checkpointed blocks still need a grad path

    # --- train and save: a directory `aqa ask --model OUTPUT_DIR` loads -------------------------------------------
    trainer = AudioSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=AudioQuestions(examples, data_args.audio_channel),
        data_collator=AnswerCollator(processor, family, features_dtype=model.dtype),
        processing_class=processor,
        compute_loss_func=answer_loss,
        eval_set=eval_set,
    )
    trainer.train(resume_from_checkpoint=checkpoint)
    save_final(trainer, model_args, training_args)


def run(argv: list[str] | None = None) -> int:
    """`python -m train.sft`: user errors print one line on stderr and exit 2."""
    return run_main(main, argv)


if __name__ == "__main__":
    sys.exit(run())
