"""What GRPO and SFT share beyond data: settings checked before anything loads, loading the policy and processor,
logging, resuming, evaluating and saving (`AudioTrainerHooks`), the CLI wrapper.

Both trainers load, save, resume, evaluate and fail the same way, so an SFT run and a GRPO run differ only in their
objective.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import datasets
import torch
import transformers
from accelerate import PartialState
from accelerate.utils import gather_object
from peft import LoraConfig, PeftModel
from transformers import AutoProcessor, PreTrainedModel, Trainer, TrainingArguments
from transformers.trainer_utils import IntervalStrategy
from trl import get_peft_config
from trl.models import unwrap_model_for_generation

from aqa.errors import AQAError, first_line
from aqa.families import Family, family_of
from aqa.model import AQAModel, check_quantizable, load_kwargs, read_config
from train.checkpoints import (
    load_checkpoint_weights,
)
from train.config import AudioModelConfig, DataArguments
from train.data import Example, load_examples
from train.errors import UsageError
from train.evaluation import (
    EvalSet,
    answer_shard,
    eval_metrics,
    in_file_order,
    load_eval_set,
    precision_of,
    write_predictions,
)

logger = logging.getLogger(__name__)

# Optional logging backends (`--report_to`): the packages any of which each one needs
LOGGING_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "trackio": ("trackio",)}


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


def check_model(model_args: AudioModelConfig) -> Family:
    """The checkpoint's family, from its config, before anything loads: a wrong path, a model of no supported family,
    4/8-bit for a model bitsandbytes would leave mostly unquantized (Qwen3-Omni's fused experts), LoRA dropout on
    parameters PEFT adapts without it, or LoRA targets that match no module, is one line now."""
    precision = "4bit" if model_args.load_in_4bit else "8bit" if model_args.load_in_8bit else "fp32"
    config = read_config(model_args.model_name_or_path, precision)
    check_quantizable(config, precision)
    family = family_of(config.model_type, model_args.model_name_or_path)
    if model_args.use_peft:
        if model_args.lora_dropout and lora_target_parameters(model_args, family):
            raise UsageError(
                f"--lora_dropout must be 0 for LoRA on {family.title}'s fused expert weights (PEFT's "
                "target_parameters has no dropout): give --lora_dropout 0, or --lora_target_parameters none for the "
                "attention layers only"
            )
        with torch.device("meta"):  # the module names, without a byte of weights
            skeleton = family.model_class()._from_config(family.answering_config(config))
        lora_target_modules(model_args, family, skeleton)
    return family


def lora_target_parameters(model_args: AudioModelConfig, family: Family) -> list[str]:
    """The parameters (no layers: fused MoE experts) LoRA adapts: --lora_target_parameters, else the family's."""
    names = model_args.lora_target_parameters
    return list(family.lora_target_parameters) if names is None else [name for name in names if name != "none"]


def get_model(model_args: AudioModelConfig) -> PreTrainedModel:
    """The policy, in the recipe's dtype, by its family's class (an Omni checkpoint's thinker only: the talker never
    loads); 4/8-bit quantize only the language model (as `aqa.load_model` does). What audio questions never reach
    (a vision encoder) is frozen; `--freeze_audio_encoder` freezes the audio encoder but not its projector."""
    family = check_model(model_args)
    kwargs = {"revision": model_args.model_revision, "attn_implementation": model_args.attn_implementation}
    if model_args.load_in_4bit or model_args.load_in_8bit:
        kwargs.update(load_kwargs(family, "4bit" if model_args.load_in_4bit else "8bit"))
        kwargs["device_map"] = {"": PartialState().device}  # quantized weights are placed at load, one copy per GPU
    else:
        dtype = model_args.dtype
        kwargs["dtype"] = dtype if dtype in ("auto", None) else getattr(torch, dtype)
    try:
        model = family.model_class().from_pretrained(model_args.model_name_or_path, **kwargs)
    except OSError as error:
        raise UsageError(f"cannot load {model_args.model_name_or_path}: {first_line(error)}") from None
    # Never used, so never given a gradient: frozen, no optimizer state is kept for them, and distributed data
    # parallel does not wait for their gradients (it would stop with "parameters that were not used").
    freeze(model, family.unused_by_audio)
    if model_args.freeze_audio_encoder:
        freeze(model, family.audio_encoder, keep=family.audio_projector)
    return model


def router_aux_loss_coef(model: PreTrainedModel) -> float:
    """The weight of a mixture-of-experts model's load-balancing loss in training; 0.0 for a dense model. TRL 1.16's
    GRPOTrainer reads the same: the text config's router_aux_loss_coef where it has output_router_logits (Qwen3-Omni:
    0.001, the coefficient its own forward adds the loss with)."""
    text = model.config.get_text_config()
    return getattr(text, "router_aux_loss_coef", 0.0) if hasattr(text, "output_router_logits") else 0.0


def freeze(model: torch.nn.Module, prefixes: tuple[str, ...], keep: tuple[str, ...] = ()) -> None:
    """Stop training the parameters under the modules named by `prefixes`, except those under `keep`."""
    for name, parameter in model.named_parameters():
        if under(name, prefixes) and not under(name, keep):
            parameter.requires_grad_(False)


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    """Whether the parameter or module `name` is (inside) one of the modules named by `prefixes`."""
    return any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)


def get_lora_config(model_args: AudioModelConfig, model: PreTrainedModel) -> LoraConfig | None:
    """TRL's LoRA config from the model options (None without --use_peft), targeting by default the family's layers
    (`Family.lora_target_modules` and `lora_target_parameters`), a regex resolved into the full names it matches.

    Resolved here because PEFT 0.21 rewrites a regex for a model whose layout changed in transformers 5 (the
    mixture-of-experts ones, Qwen3-Omni among them) into bare layer names (q_proj, k_proj ...), which it then matches
    at the end of any module name: in the audio encoder too. Full names mean the same to PEFT for every family."""
    config = get_peft_config(model_args)
    if config is None:
        return None
    family = family_of(model.config.model_type)
    config.target_modules = lora_target_modules(model_args, family, model)
    config.target_parameters = lora_target_parameters(model_args, family) or None
    return config


def lora_target_modules(model_args: AudioModelConfig, family: Family, model: torch.nn.Module) -> list[str]:
    """The modules LoRA adapts: --lora_target_modules (a regex, full-matched, or names PEFT matches exactly or as
    suffixes), else the family's; a regex becomes the full names of the modules it matches. None matching is a
    UsageError (checked on a meta-device copy before the weights load, see `check_model`)."""
    targets = model_args.lora_target_modules or family.lora_target_modules
    names = [name for name, _ in model.named_modules()]
    if isinstance(targets, str):
        try:
            matched = [name for name in names if re.fullmatch(targets, name)]
        except re.error as error:
            raise UsageError(f"--lora_target_modules {targets} is not a regular expression ({error})") from None
    else:
        matched = [name for name in names if any(name == t or name.endswith(f".{t}") for t in targets)]
        matched = list(targets) if matched else []
    if not matched:
        shown = targets if isinstance(targets, str) else " ".join(targets)
        raise UsageError(f"--lora_target_modules {shown} matches no module of this {family.title} model")
    return matched


def get_processor(model_args: AudioModelConfig):
    processor = AutoProcessor.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision)
    processor.tokenizer.padding_side = "left"  # generation continues prompts, so they are left-padded
    return processor


# TRL and Trainer settings the audio trainers cannot honour, and why; each is refused before anything loads.
UNSUPPORTED = {
    "use_vllm": "TRL's vLLM rollouts pass images only, never audio",
    "use_transformers_continuous_batching": "TRL's continuous batching generates from text only, without the audio",
    "cast_lm_head_to_fp32": "TRL 1.16 reads config.tie_word_embeddings, which Qwen2-Audio's and Audio Flamingo 3's "
    "configs do not have",
    "model_init_kwargs": "the model is loaded from the model options (--dtype, --attn_implementation, --load_in_4bit)",
    "remove_unused_columns": "it would drop the columns the rewards and the audio collation read (answer, the clip)",
    "num_generations_eval": "evaluation answers --eval_file with aqa's greedy answering, sampling no generations",
}


def check_settings(training_args: TrainingArguments) -> None:
    """Refuse, in one line and before anything loads, the settings the audio trainers cannot honour."""
    for name, reason in UNSUPPORTED.items():
        if getattr(training_args, name, None):
            raise UsageError(f"--{name} is not supported here: {reason}")


def set_up_evaluation(data_args: DataArguments, training_args: TrainingArguments) -> None:
    """`--eval_file` turns evaluation on, every `--eval_steps` (default: at every checkpoint, so each checkpoint's
    trainer_state.json holds its own accuracy); evaluation without an eval file is refused."""
    if data_args.eval_file is None:
        if training_args.eval_strategy != IntervalStrategy.NO or training_args.eval_steps:
            raise UsageError("evaluation needs questions: give --eval_file (AVQA rows or an MMAU-format file)")
        return
    if training_args.eval_strategy == IntervalStrategy.NO:
        training_args.eval_strategy = IntervalStrategy.STEPS
        training_args.do_eval = True
        if not training_args.eval_steps:
            saving = training_args.save_strategy == "steps"
            training_args.eval_steps = training_args.save_steps if saving else training_args.logging_steps
    if training_args.load_best_model_at_end:
        metric = training_args.metric_for_best_model or ""
        if metric.removeprefix("eval_") not in ("accuracy", "strict_accuracy"):
            raise UsageError("--load_best_model_at_end picks by --metric_for_best_model accuracy or strict_accuracy")


def get_eval_set(data_args: DataArguments) -> EvalSet | None:
    if data_args.eval_file is None:
        return None
    return load_eval_set(data_args.eval_file, data_args.eval_audio_dir, data_args.data_options())


def check_report_to(training_args: TrainingArguments) -> None:
    """A logging backend that is not installed fails now, in one line, not after the model has loaded."""
    for backend in training_args.report_to or []:
        packages = LOGGING_PACKAGES.get(backend, ())
        if packages and not any(installed(package) for package in packages):
            raise UsageError(f"--report_to {backend} needs the {backend} package: pip install {backend}")


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


# --- checkpoints: the weights back under whatever key names they were saved with ------------------------------------


@contextlib.contextmanager
def generation_config_of(model, config):
    """`model` generates with `config` inside the block (the Trainer aligns the live one with the tokenizer)."""
    live = model.generation_config
    model.generation_config = config
    try:
        yield
    finally:
        model.generation_config = live


class AudioTrainerHooks:
    """Trainer hooks GRPO's and SFT's trainers share; mixed in before the Trainer class, each overrides one hook.

    - `_load_from_checkpoint` / `_load_best_model`: the trained weights come back under their saved key names, every
      key matched (`load_checkpoint_weights`). DeepSpeed restores its own checkpoint (global_stepN) strictly and FSDP
      its own; those paths are the Trainer's.
    - `_save`: checkpoints and the final model keep the config the model was loaded with, so that `aqa ask --model
      CHECKPOINT` loads and decodes them as the base model (training edits the live config: the Trainer aligns the
      end token with the tokenizer's, gradient checkpointing turns use_cache off, GRPO adds image_token_id).
    - `evaluate`: aqa's own answering and scoring on `eval_set` (train/evaluation.py), between steps.
    """

    eval_set: EvalSet | None = None

    def remember_loaded_config(self, model) -> None:
        """Call before the Trainer (or a subclass) edits the model's configs."""
        self._loaded_config = copy.deepcopy(model.config)
        self._loaded_generation_config = copy.deepcopy(model.generation_config)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        logger.info("loading the weights of %s", resume_from_checkpoint)
        model = self.accelerator.unwrap_model(model if model is not None else self.model)
        load_checkpoint_weights(model, resume_from_checkpoint)

    def _load_best_model(self):
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_best_model()
        logger.info("loading the best checkpoint, %s", self.state.best_model_checkpoint)
        load_checkpoint_weights(self.accelerator.unwrap_model(self.model), self.state.best_model_checkpoint)

    def _save(self, output_dir: str | None = None, state_dict=None):
        super()._save(output_dir, state_dict)
        folder = Path(output_dir or self.args.output_dir)
        if self.args.should_save and (folder / "config.json").is_file():  # an adapter directory has no config.json
            self._loaded_config.save_pretrained(folder)
            self._loaded_generation_config.save_pretrained(folder)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Answer the eval questions with the policy as it is now (each process a share, gathered), log the accuracy
        beside the training metrics, and write the predictions to OUTPUT_DIR/eval/step-N.json.

        Between steps and without side effects on training: the model is in eval mode (no dropout) and back in its
        mode after, gradient checkpointing is paused as for generation, the random number generators are restored,
        and ZeRO-3 shards are gathered for the duration (as TRL does for generation)."""
        eval_set = eval_dataset if isinstance(eval_dataset, EvalSet) else self.eval_set
        if eval_set is None:
            raise ValueError("no eval questions: pass --eval_file")
        start = time.perf_counter()
        model, accelerator = self.model, self.accelerator
        was_training = model.training
        model.eval()
        devices = [accelerator.device.index or 0] if accelerator.device.type == "cuda" else []
        try:
            with (
                torch.random.fork_rng(devices=devices),
                unwrap_model_for_generation(
                    self.model_wrapped,
                    accelerator,
                    gradient_checkpointing_kwargs=self.args.activation_checkpointing_kwargs,
                ) as unwrapped,
            ):
                policy = unwrapped.get_base_model() if isinstance(unwrapped, PeftModel) else unwrapped
                with generation_config_of(policy, self._loaded_generation_config):
                    name, precision = self.args.output_dir, precision_of(policy)
                    family = family_of(policy.config.model_type)
                    answerer = AQAModel(policy, self.processing_class, family, name, precision, accelerator.device)
                    rank, world = accelerator.process_index, accelerator.num_processes
                    shard = answer_shard(answerer, eval_set, rank, world, self.args.per_device_eval_batch_size)
            predictions = in_file_order(gather_object(shard))
            metrics = eval_metrics(predictions, metric_key_prefix)
            metrics[f"{metric_key_prefix}_runtime"] = round(time.perf_counter() - start, 3)
            if self.args.should_save:
                write_predictions(self.args.output_dir, self.state.global_step, predictions)
            self.log(metrics)  # in eval mode: TRL's log() then adds its (empty) eval metrics, not the training ones
        finally:
            model.train(was_training)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


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
    """Fold a LoRA adapter into an unquantized copy of the base model (on the CPU: ~17 GB of RAM for 8.4B in bf16,
    ~64 GB for Qwen3-Omni's thinker). An Omni checkpoint's thinker is saved alone: what `aqa` loads of it."""
    dtype = torch.float32 if model_args.dtype == "float32" else torch.bfloat16
    family = check_model(model_args)
    base = family.model_class().from_pretrained(
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
    finally:
        # Several processes (torchrun): close the process group before the interpreter exits, or gloo's threads can
        # be torn down while still joinable and abort the process ("terminate called without an active exception").
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0
