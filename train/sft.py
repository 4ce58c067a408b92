"""Supervised fine-tuning baseline: the paper's comparison point for GRPO, on the same AVQA JSONL and the same prompt.

Each question becomes R1-AQA's exact chat prompt (`aqa.build_messages` + the processor's chat template, the audio
through `aqa.load_audio`) followed by the target `<answer>{correct option}</answer><|im_end|>`, i.e. what the model
should emit; the loss covers those target tokens only (labels are -100 on the system turn, the audio, the question
and the padding). Full fine-tuning, or LoRA on the language model's linear layers only (`--use_peft true`).

    # one GPU (LoRA) or the CPU smoke test
    python -m train.sft --config train/recipes/sft_avqa_lora.yaml
    python -m train.sft --config train/recipes/sft_tiny_cpu.yaml --model_name_or_path tiny-model
    # 8 GPUs, full fine-tune with DeepSpeed ZeRO-3
    accelerate launch --config_file train/recipes/accelerate_configs/zero3.yaml -m train.sft \
        --config train/recipes/sft_avqa_full.yaml

Every field of the recipe can be overridden on the command line (`--learning_rate 1e-5 --max_steps 100`).
The final model (LoRA merged into the weights) and processor are saved in --output_dir, so
`python -m aqa ask --model OUTPUT_DIR ...` and `python -m aqa mmau run --model OUTPUT_DIR ...` load it directly.
Built on the HF Trainer with an audio collator: TRL 1.16's SFTTrainer has no audio path (FACTS.md).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration, Trainer, TrainingArguments, set_seed
from trl import ModelConfig, TrlParser

from aqa.audio import N_SAMPLES, SAMPLE_RATE, load_audio
from aqa.errors import AQAError, InputError, ModelError
from aqa.model import read_config
from aqa.prompt import build_messages
from train.data import DataOptions, Example, load_examples

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label of every position the loss skips (PyTorch's cross-entropy default)
END_OF_TURN = "<|im_end|>"  # Qwen's end of an assistant turn: the model emits it after the answer, then stops
# LoRA goes on the language model's attention and MLP projections only; the audio encoder's own q/k/v_proj stay frozen.
LANGUAGE_MODEL_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LANGUAGE_MODEL_LORA_TARGETS = rf"^model\.language_model\..*\.({'|'.join(LANGUAGE_MODEL_LINEARS)})$"


@dataclass
class SFTScriptArguments:
    """What to train on; the model and LoRA settings are TRL's `ModelConfig`, the rest `SFTConfig`."""

    train_file: str = field(
        default="data/avqa_train.jsonl", metadata={"help": "R1-AQA JSONL from train.prepare_avqa (or MMAU-style rows)"}
    )
    drop_view: bool = field(
        default=False, metadata={"help": "drop AVQA questions about the picture (question_relation 'View')"}
    )
    video_to_audio: bool = field(
        default=True, metadata={"help": "R1-AQA's rewrite of 'video' to 'audio' in questions, as GRPO training does"}
    )
    check_audio: bool = field(default=True, metadata={"help": "decode every clip once up front; drop unreadable ones"})


@dataclass
class SFTConfig(TrainingArguments):
    """The HF Trainer's arguments; the collator needs the raw examples, so the Trainer must not drop their fields."""

    remove_unused_columns: bool = field(
        default=False, metadata={"help": "keep False: the audio collator reads fields the model's forward lacks"}
    )


def answer_target(answer: str) -> str:
    """What the model should emit for a question: the released model's answer-only format, then end of turn."""
    return f"<answer>{answer}</answer>{END_OF_TURN}"


class AudioQuestions(Dataset):
    """Examples with their audio decoded on access (in DataLoader workers when dataloader_num_workers > 0)."""

    def __init__(self, examples: list[Example]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        # The encoder hears 30 s: cutting here saves the processor the work (it would cut as well).
        return {"example": example, "samples": load_audio(example.audio_path)[:N_SAMPLES]}


@dataclass(frozen=True)
class AnswerCollator:
    """Prompt tokens exactly as at inference, then the target tokens; labels only on the target; right padding."""

    processor: object  # Qwen2AudioProcessor
    features_dtype: torch.dtype = torch.float32  # the model's dtype: the audio encoder does not cast its input

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        encoded = [self.encode(item["example"], item["samples"]) for item in items]
        width = max(len(ids) for ids, _, _ in encoded)
        pad = self.processor.tokenizer.pad_token_id
        rows = [(ids + [pad] * (width - len(ids)), labels + [IGNORE_INDEX] * (width - len(ids)), len(ids))
                for ids, labels, _ in encoded]  # fmt: skip
        features = [inputs for _, _, inputs in encoded]
        return {
            "input_ids": torch.tensor([ids for ids, _, _ in rows]),
            "attention_mask": torch.tensor([[1] * n + [0] * (width - n) for _, _, n in rows]),
            "labels": torch.tensor([labels for _, labels, _ in rows]),
            "input_features": torch.cat([f["input_features"] for f in features]).to(self.features_dtype),
            "feature_attention_mask": torch.cat([f["feature_attention_mask"] for f in features]),
        }

    def encode(self, example: Example, samples) -> tuple[list[int], list[int], dict]:
        """(token ids, labels, audio features) of one question: the processor expands <|AUDIO|> to its frames."""
        messages = build_messages(example.question, example.options, audio_url=example.audio_path)
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(text=[prompt], audio=[samples], sampling_rate=SAMPLE_RATE, return_tensors="pt")
        prompt_ids = inputs["input_ids"][0].tolist()
        # Tokenized apart from the prompt so the boundary is exactly where generation starts at inference.
        target_ids = self.processor.tokenizer(answer_target(example.answer), add_special_tokens=False)["input_ids"]
        return prompt_ids + target_ids, [IGNORE_INDEX] * len(prompt_ids) + target_ids, inputs


def answer_loss(outputs, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
    """Cross-entropy of the target tokens only, summed, over the number of target tokens in the accumulated batch.

    Qwen2-Audio's own loss is a per-micro-batch mean that ignores `num_items_in_batch`, yet the Trainer (seeing
    `**kwargs` in its forward) would treat it as already scaled for gradient accumulation: this function is the
    token-weighted loss the Trainer expects. Only target positions are gathered, so the full-vocabulary logits of the
    prompt are never upcast.
    """
    targets = labels[:, 1:].to(outputs.logits.device)  # position t predicts token t + 1
    keep = targets != IGNORE_INDEX
    total = F.cross_entropy(outputs.logits[:, :-1][keep].float(), targets[keep], reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else keep.sum()
    return total / count


def load_processor(name_or_path: str):
    processor = AutoProcessor.from_pretrained(name_or_path)
    tokenizer = processor.tokenizer
    if tokenizer.convert_tokens_to_ids(END_OF_TURN) in (None, tokenizer.unk_token_id):
        raise ModelError(f"{name_or_path}: its tokenizer has no {END_OF_TURN} token; is it a Qwen2-Audio checkpoint?")
    return processor


def load_policy(model_args: ModelConfig) -> Qwen2AudioForConditionalGeneration:
    """The model to train: full weights in the recipe's dtype, LoRA adapters on the language model with use_peft.

    No device_map: the Trainer places the model (and DeepSpeed ZeRO-3 shards it as it loads).
    """
    name = model_args.model_name_or_path
    dtype = model_args.dtype if model_args.dtype in ("auto", None) else getattr(torch, model_args.dtype)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(
        name, dtype=dtype, attn_implementation=model_args.attn_implementation
    )
    if not model_args.use_peft:
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=model_args.lora_target_modules or LANGUAGE_MODEL_LORA_TARGETS,
        task_type=model_args.lora_task_type,
    )
    return get_peft_model(model, lora)


def save_final(trainer: Trainer, processor, output_dir: str) -> None:
    """Save a plain Qwen2-Audio checkpoint: LoRA adapters are merged in, so `aqa` loads it like any other."""
    if not hasattr(trainer.model, "merge_and_unload"):
        trainer.save_model(output_dir)  # gathers ZeRO-3 shards; writes the processor too
        return
    merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
    if trainer.is_world_process_zero():
        merged.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)


def check_options(model_args: ModelConfig, script_args: SFTScriptArguments) -> None:
    if not model_args.model_name_or_path:
        raise InputError("give --model_name_or_path (e.g. Qwen/Qwen2-Audio-7B-Instruct or a local checkpoint)")
    if model_args.load_in_4bit or model_args.load_in_8bit:
        raise InputError("train.sft does not quantize the model: use LoRA (--use_peft true) in bf16 instead")
    read_config(model_args.model_name_or_path, "fp32")  # one-line errors for a wrong path or a non-Qwen2-Audio model
    if not Path(script_args.train_file).is_file():
        raise InputError(f"{script_args.train_file}: no such training file (make it with python -m train.prepare_avqa)")


def train(script_args: SFTScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> None:
    check_options(model_args, script_args)
    logger.info("script %s\nmodel %s\ntraining %s", script_args, model_args, training_args)
    set_seed(training_args.seed)

    # --- data ----------------------------------------------------------------------------------------------------
    options = DataOptions(script_args.drop_view, script_args.video_to_audio, script_args.check_audio)
    examples, skipped = load_examples(script_args.train_file, options)
    if not examples:
        raise InputError(f"{script_args.train_file}: no usable examples (skipped: {dict(skipped)})")

    # --- model ---------------------------------------------------------------------------------------------------
    processor = load_processor(model_args.model_name_or_path)
    model = load_policy(model_args)
    if training_args.gradient_checkpointing:
        model.config.use_cache = False
        if model_args.use_peft:
            model.enable_input_require_grads()  # frozen embeddings: checkpointed blocks still need a grad path

    # --- train and save ------------------------------------------------------------------------------------------
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=AudioQuestions(examples),
        data_collator=AnswerCollator(processor, features_dtype=model.dtype),
        processing_class=processor,
        compute_loss_func=answer_loss,
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    save_final(trainer, processor, training_args.output_dir)
    logger.info("saved the fine-tuned model and processor to %s", training_args.output_dir)


def main(argv: list[str] | None = None) -> int:
    parser = TrlParser((SFTScriptArguments, SFTConfig, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        train(script_args, training_args, model_args)
    except AQAError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
