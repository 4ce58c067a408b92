"""What GRPO and SFT share beyond data: settings checked before anything loads, loading the policy and processor,
logging, resuming, evaluating and saving (`AudioTrainerHooks`), the CLI wrapper.

Both trainers load, save, resume, evaluate and fail the same way, so an SFT run and a GRPO run differ only in their
objective.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import logging
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import datasets
import torch
import transformers
from accelerate import PartialState
from accelerate.utils import gather_object
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration, Trainer, TrainingArguments
from transformers.conversion_mapping import get_model_conversion_mapping
from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key
from transformers.trainer_utils import IntervalStrategy
from transformers.utils import ADAPTER_SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME
from trl.models import unwrap_model_for_generation

from aqa.errors import AQAError, first_line
from aqa.families import QWEN2_AUDIO, family_of
from aqa.model import AQAModel, load_kwargs
from train.config import AUDIO_ENCODER, AudioModelConfig, DataArguments
from train.data import Example, load_examples
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
        kwargs.update(load_kwargs(QWEN2_AUDIO, "4bit" if model_args.load_in_4bit else "8bit"))
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


# TRL and Trainer settings the audio trainers cannot honour, and why; each is refused before anything loads.
UNSUPPORTED = {
    "use_vllm": "TRL's vLLM rollouts pass images only, never audio",
    "use_transformers_continuous_batching": "TRL's continuous batching generates from text only, without the audio",
    "cast_lm_head_to_fp32": "TRL 1.16 reads config.tie_word_embeddings, which Qwen2-Audio's config does not have",
    "model_init_kwargs": "the model is loaded from the model options (--dtype, --attn_implementation, --load_in_4bit)",
    "remove_unused_columns": "it would drop the columns the rewards and the audio collation read (answer, the clip)",
    "num_generations_eval": "evaluation answers --eval_file with aqa's greedy answering, sampling no generations",
}


def check_settings(training_args: TrainingArguments) -> None:
    """Refuse, in one line and before anything loads, the settings the audio trainers cannot honour."""
    for name, reason in UNSUPPORTED.items():
        if getattr(training_args, name, None):
            raise UsageError(f"--{name} is not supported here: {reason}")


def resume_checkpoint(training_args: TrainingArguments, model_args: AudioModelConfig) -> str | None:
    """The checkpoint folder to resume from: `--resume_from_checkpoint DIR`, or `true`/`last` for the newest good one
    in output_dir. Checked now, before anything loads, so that a bad checkpoint costs one line and not minutes of
    loading then a traceback: every file a resume reads must be there and whole (the trainer state, the weights'
    safetensors headers, the optimizer, the scheduler and the RNG state; a checkpoint saved with --save_only_model
    would restart the optimizer and the learning-rate schedule), and a LoRA adapter must be there exactly when LoRA
    is on. With `true`, a newest checkpoint that is incomplete (a run killed while writing it) or unreadable is
    skipped with a warning naming it, for the newest good one."""
    value = training_args.resume_from_checkpoint
    if value is None:
        return None
    if value.lower() in ("true", "last"):
        return newest_good_checkpoint(Path(training_args.output_dir), value, model_args.use_peft)
    folder = Path(value)
    if not folder.is_dir():
        raise UsageError(f"{value}: no such checkpoint directory")
    if problem := checkpoint_problem(folder, model_args.use_peft):
        raise UsageError(f"{folder}: {problem}")
    return str(folder)


def newest_good_checkpoint(output_dir: Path, value: str, use_peft: bool) -> str:
    folders = sorted(
        (path for path in output_dir.glob("checkpoint-*") if path.is_dir() and path.name[11:].isdigit()),
        key=lambda path: int(path.name[11:]),
        reverse=True,
    )
    if not folders:
        raise UsageError(f"--resume_from_checkpoint {value}: {output_dir} holds no checkpoint-N folder")
    problems = []
    for folder in folders:
        problem = checkpoint_problem(folder, use_peft)
        if problem is None:
            return str(folder)
        logger.warning("skipping %s, which cannot be resumed: %s", folder, problem)
        problems.append(problem)
    raise UsageError(
        f"--resume_from_checkpoint {value}: no checkpoint in {output_dir} can be resumed "
        f"(the newest, {folders[0].name}: {problems[0]})"
    )


def checkpoint_problem(folder: Path, use_peft: bool) -> str | None:
    """Why `folder` cannot be resumed, if it cannot: a file the resume reads is missing or cut short. A checkpoint of
    the other kind (LoRA or not) is not a broken one: that is a UsageError at once."""
    if not (folder / "trainer_state.json").is_file():
        return "not a training checkpoint (no trainer_state.json)"
    if problem := json_problem(folder / "trainer_state.json"):
        return f"trainer_state.json is {problem}"
    if not has_optimizer_state(folder):
        return "no optimizer state (saved with --save_only_model?), so it cannot be resumed"
    adapter = (folder / ADAPTER_SAFE_WEIGHTS_NAME).is_file()
    if adapter and not use_peft:
        raise UsageError(f"{folder} holds a LoRA adapter: resume it with --use_peft true and the same LoRA options")
    if use_peft and not adapter:
        raise UsageError(f"{folder} holds no LoRA adapter: a full fine-tune resumes without --use_peft")
    weights = [folder / ADAPTER_SAFE_WEIGHTS_NAME] if use_peft else weight_files(folder)
    if isinstance(weights, str):
        return weights
    for path in weights:
        if problem := safetensors_problem(path):
            return f"{path.relative_to(folder)} is {problem}"
    optimizer = [path for path in (folder / "optimizer.pt", folder / "optimizer.bin") if path.is_file()]
    # DeepSpeed and FSDP keep the optimizer in folders of their own, which they check as they load them.
    if optimizer and not (folder / "scheduler.pt").is_file():
        return "scheduler.pt is missing (without it the Trainer silently skips the optimizer's state too)"
    random_states = sorted(folder.glob("rng_state*.pth"))
    if not random_states:
        return "rng_state.pth is missing (the random number generators' state)"
    for path in [*optimizer, folder / "scheduler.pt", *random_states]:
        if path.is_file() and (problem := torch_file_problem(path)):
            return f"{path.name} is {problem}"
    return None


def has_optimizer_state(folder: Path) -> bool:
    """optimizer.pt (or .bin) as the Trainer writes it, a sharded optimizer folder (FSDP), or DeepSpeed's
    global_stepN folder, which holds the optimizer and the ZeRO partitions of the weights."""
    files = (folder / "optimizer.pt").is_file() or (folder / "optimizer.bin").is_file()
    folders = [path.name for path in folder.iterdir() if path.is_dir()]
    return files or any("optimizer" in name or name.startswith("global_step") for name in folders)


def weight_files(folder: Path) -> list[Path] | str:
    """The safetensors files of a full checkpoint (one, or the shards its index names), or why there are none."""
    single, index = folder / SAFE_WEIGHTS_NAME, folder / SAFE_WEIGHTS_INDEX_NAME
    if single.is_file():
        return [single]
    if index.is_file():
        if problem := json_problem(index):
            return f"{index.name} is {problem}"
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
        if not isinstance(weight_map, dict):
            return f"{index.name} is not a weights index (no weight_map)"
        shards = [folder / name for name in sorted(set(map(str, weight_map.values())))]
        missing = [path.name for path in shards if not path.is_file()]
        return f"{missing[0]} is missing (named in {index.name})" if missing else shards
    if any(path.is_dir() for path in folder.glob("global_step*")):
        return []  # DeepSpeed's own checkpoint, which holds the weights and which DeepSpeed loads and checks
    return f"no model weights ({SAFE_WEIGHTS_NAME}) to resume from"


def json_problem(path: Path) -> str | None:
    try:
        value = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"not JSON ({first_line(error)})"
    return None if isinstance(value, dict) else "not a JSON object"


def safetensors_problem(path: Path) -> str | None:
    """Whether a safetensors file is whole, from its header alone: an 8-byte length, a JSON table of tensors, and
    data up to the end of the last tensor (reading the header costs microseconds, whatever the file's size)."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    with path.open("rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        if size < 8 or length > size - 8:
            return f"cut short ({size} bytes, not even its header)"
        try:
            header = json.loads(handle.read(length))
            ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, IndexError, TypeError):
            return "not a safetensors file (its header is not a table of tensors)"
    expected = 8 + length + max(ends, default=0)
    return f"cut short ({size} of {expected} bytes)" if size < expected else None


def torch_file_problem(path: Path) -> str | None:
    """Whether a torch.save file is whole: torch writes a zip archive, whose table of contents is its last bytes, so
    a file cut short has none. (Files of the older pickle format, before torch 1.6, cannot be checked this way.)"""
    with path.open("rb") as handle:
        start = handle.read(2)
    if start[:1] == b"\x80":  # the legacy format: a bare pickle
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        return f"cut short or damaged ({first_line(error)})"
    return None


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


def load_checkpoint_weights(model: torch.nn.Module, folder: str | Path) -> None:
    """Load a checkpoint's trained weights into `model`, every key matched, or raise UsageError in one line.

    transformers 5 renames Qwen2-Audio's parameters at load (the files keep `language_model.model.*`, `audio_tower.*`;
    the modules are `model.language_model.*`, `model.audio_tower.*`) and `save_pretrained` writes the old names back,
    but the Trainer's resume calls a plain non-strict `load_state_dict`: nothing matches, a warning lists the "missing
    keys" and training goes on from the base weights (huggingface/transformers issue 43701). Here the checkpoint's
    keys go through the same renaming `from_pretrained` applies, and any key left unmatched is an error. A LoRA
    checkpoint holds only the adapter, loaded by PEFT and checked the same way.
    """
    folder = Path(folder)
    if isinstance(model, PeftModel):
        load_adapter_weights(model, folder)
        return
    files = checkpoint_files(folder)
    if files is None:
        if (folder / ADAPTER_SAFE_WEIGHTS_NAME).is_file():
            raise UsageError(f"{folder} holds a LoRA adapter: resume it with --use_peft true and the same LoRA options")
        raise UsageError(f"{folder}: no model weights ({SAFE_WEIGHTS_NAME}) to resume from")
    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    saved = {rename_source_key(key, renamings, converters)[0]: (key, file) for key, file in files.items()}
    parameters = model.state_dict()
    missing, unexpected = sorted(parameters.keys() - saved.keys()), sorted(saved.keys() - parameters.keys())
    if missing or unexpected:
        raise UsageError(f"{folder}: its weights do not match the model ({key_mismatch(missing, unexpected)})")
    by_file: dict[Path, dict[str, str]] = {}
    for name, (key, file) in saved.items():
        by_file.setdefault(file, {})[name] = key
    for file, names in by_file.items():
        with safe_open(str(file), framework="pt", device="cpu") as tensors:
            state = {name: tensors.get_tensor(key) for name, key in names.items()}
        wrong = [name for name, tensor in state.items() if tensor.shape != parameters[name].shape]
        if wrong:
            name = wrong[0]
            shapes = f"{tuple(state[name].shape)} saved, {tuple(parameters[name].shape)} in the model"
            raise UsageError(f"{folder}: {len(wrong)} weight(s) of another shape, e.g. {name} ({shapes})")
        model.load_state_dict(state, strict=False)


def checkpoint_files(folder: Path) -> dict[str, Path] | None:
    """Each saved key and the safetensors file that holds it (one file, or shards with an index); None if none."""
    single, index = folder / SAFE_WEIGHTS_NAME, folder / SAFE_WEIGHTS_INDEX_NAME
    if single.is_file():
        with safe_open(str(single), framework="pt", device="cpu") as tensors:
            return dict.fromkeys(tensors.keys(), single)
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return {key: folder / file for key, file in weight_map.items()}
    return None


def load_adapter_weights(model: PeftModel, folder: Path) -> None:
    if not (folder / ADAPTER_SAFE_WEIGHTS_NAME).is_file():
        raise UsageError(f"{folder} holds no LoRA adapter: a full fine-tune resumes without --use_peft")
    adapter = model.active_adapters[0]
    try:
        result = model.load_adapter(str(folder), adapter, is_trainable=True)
    except RuntimeError as error:  # PEFT's load_state_dict: tensors of another shape (another LoRA rank ...)
        raise UsageError(f"{folder}: its adapter does not fit the model ({first_line(error)})") from None
    if result.missing_keys or result.unexpected_keys:
        mismatch = key_mismatch(sorted(result.missing_keys), sorted(result.unexpected_keys))
        raise UsageError(f"{folder}: its adapter does not match the model's LoRA layers ({mismatch})")


def key_mismatch(missing: list[str], unexpected: list[str]) -> str:
    parts = [f"{len(keys)} {what}, e.g. {keys[0]}" for what, keys in (("missing", missing), ("unexpected", unexpected))]
    return "; ".join(part for part, keys in zip(parts, (missing, unexpected)) if keys)


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
    finally:
        # Several processes (torchrun): close the process group before the interpreter exits, or gloo's threads can
        # be torn down while still joinable and abort the process ("terminate called without an active exception").
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0
