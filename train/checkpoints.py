"""Checkpoints: which one a resume starts from, every file it reads checked before anything loads, and the trained
weights loaded back, tensor for tensor, under the names transformers saved them with.

A resume that fails half-way through loading costs minutes and ends in a traceback; here a missing or truncated file
is one line naming it, and `--resume_from_checkpoint true` steps back over a newest checkpoint that a killed run left
incomplete.
"""

from __future__ import annotations

import copy
import json
import logging
import zipfile
from pathlib import Path

import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import TrainingArguments
from transformers.conversion_mapping import get_model_conversion_mapping
from transformers.core_model_loading import WeightConverter, WeightRenaming, dot_natural_key, rename_source_key
from transformers.utils import ADAPTER_SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from aqa.errors import first_line
from train.config import AudioModelConfig
from train.errors import UsageError

logger = logging.getLogger(__name__)


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


def load_checkpoint_weights(model: torch.nn.Module, folder: str | Path) -> None:
    """Load a checkpoint's trained weights into `model`, every key matched, or raise UsageError in one line.

    transformers 5 renames the parameters of older layouts at load (Qwen2-Audio's files keep `language_model.model.*`,
    `audio_tower.*`; the modules are `model.language_model.*`, `model.audio_tower.*`; a thinker's files keep
    `thinker.*`) and fuses some (Qwen3-Omni's experts, one file tensor per expert, are one 3-D parameter per layer),
    and `save_pretrained` writes the files' layout back; but the Trainer's resume calls a plain non-strict
    `load_state_dict`: nothing matches, a warning lists the "missing keys" and training goes on from the base weights
    (huggingface/transformers issue 43701). Here the checkpoint's keys go through the same renaming and fusing
    `from_pretrained` applies, and any key left unmatched is an error. A LoRA checkpoint holds only the adapter,
    loaded by PEFT and checked the same way.
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
    # Each parameter's sources: (saved key, file, the converter pattern the key feeds, or None for a plain rename),
    # in the order from_pretrained reads them (fused experts are stacked in that order)
    sources: dict[str, list[tuple[str, Path, str | None]]] = {}
    for key in sorted(files, key=dot_natural_key):
        name, pattern = rename_source_key(key, renamings, converters)
        sources.setdefault(name, []).append((key, files[key], pattern))
    parameters = model.state_dict()
    missing, unexpected = sorted(parameters.keys() - sources.keys()), sorted(sources.keys() - parameters.keys())
    if missing or unexpected:
        raise UsageError(f"{folder}: its weights do not match the model ({key_mismatch(missing, unexpected)})")
    renamed = {name: found[0][:2] for name, found in sources.items() if found[0][2] is None}
    by_file: dict[Path, dict[str, str]] = {}
    for name, (key, file) in renamed.items():
        by_file.setdefault(file, {})[name] = key
    for file, names in by_file.items():
        with safe_open(str(file), framework="pt", device="cpu") as tensors:
            load_weights(model, folder, parameters, {name: tensors.get_tensor(key) for name, key in names.items()})
    by_pattern = {pattern: converter for converter in converters for pattern in converter.source_patterns}
    for name, found in sources.items():
        if found[0][2] is not None:
            load_weights(model, folder, parameters, {name: fused(name, found, by_pattern, model)})


def fused(name: str, sources: list, by_pattern: dict[str, WeightConverter], model) -> torch.Tensor:
    """The parameter `name` from its saved parts (one tensor per expert ...), as from_pretrained converts them."""
    converter = copy.deepcopy(by_pattern[sources[0][2]])
    parts = {}
    for file in dict.fromkeys(file for _, file, _ in sources):  # each file opened once
        with safe_open(str(file), framework="pt", device="cpu") as tensors:
            parts |= {key: tensors.get_tensor(key) for key, in_file, _ in sources if in_file == file}
    for key, _, pattern in sources:  # in the order from_pretrained stacks them
        converter.add_tensor(name, key, pattern, parts[key])
    value = converter.convert(name, model=model, config=model.config)[name]
    return value[0] if isinstance(value, list) else value


def load_weights(model, folder: Path, parameters: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    """Copy `state` into the model's parameters, each of the shape it has in the model, or UsageError in one line."""
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
