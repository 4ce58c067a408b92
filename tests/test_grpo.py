"""GRPO training on the tiny checkpoint: end to end from AVQA-format JSONL with real audio, evaluation while training,
resume that restores the trained weights, settings refused before the model loads, audio in every forward pass (each
row with its own clip), R1-AQA's loss computed by hand, a learning signal, LoRA on the language model only, two
processes, recipes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import Qwen2AudioForConditionalGeneration
from trl import get_peft_config

import train.common
import train.grpo
from aqa import load_model
from tests.conftest import ROOT
from train.common import get_model, get_processor, save_final
from train.config import (
    LANGUAGE_MODEL_LORA_TARGETS,
    AudioGRPOConfig,
    AudioModelConfig,
    DataArguments,
    parse_config,
)
from train.data import AUDIO_FEATURES, DataOptions
from train.evaluation import load_eval_set
from train.grpo import CONFIG_CLASSES, get_dataset, get_rewards, run
from train.trainer import AudioGRPOTrainer

TINY_RECIPE = ROOT / "train" / "recipes" / "grpo_tiny.yaml"
PAPER_RECIPE = ROOT / "train" / "recipes" / "grpo_paper.yaml"
# Logged at every step: each reward by name, the KL to the reference, completion length, format rate
LOGGED = ("rewards/accuracy_reward/mean", "rewards/format_reward/mean", "kl", "completions/mean_length")
LOGGED += ("completions/format_rate",)


def sox(*args: str) -> None:
    subprocess.run(["sox", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def avqa_file(tmp_path_factory) -> Path:
    """R1-AQA's AVQA JSONL with real clips, plus one MMAU-style row and four rows training must skip."""
    assert shutil.which("sox"), "sox is needed by the tests (.ci/run installs it)"
    folder = tmp_path_factory.mktemp("avqa")
    (folder / "clips").mkdir()
    sox("-n", "-r", "16000", str(folder / "clips" / "tone.wav"), "synth", "2", "sine", "440")
    sox("-n", "-r", "16000", str(folder / "clips" / "noise.wav"), "synth", "1", "pinknoise", "vol", "0.3")
    (folder / "clips" / "corrupt.wav").write_text("not audio")
    avqa = dict(video_name="v", question_relation="Sound", question_type="Come From", dataset_name="AVQA")
    choices = ["Tone", "Noise", "Dog", "Car"]
    rows = [
        dict(
            avqa,
            id=1,
            question_text="What makes the sound in the video?",
            multi_choice=choices,
            answer=0,
            audio_path="clips/tone.wav",
        ),
        dict(
            avqa, id=2, question_text="What do you hear?", multi_choice=choices, answer=1, audio_path="clips/noise.wav"
        ),
        dict(avqa, id=3, question_text="Missing?", multi_choice=choices, answer=0, audio_path="clips/missing.wav"),
        dict(avqa, id=4, question_text="Corrupt?", multi_choice=choices, answer=0, audio_path="clips/corrupt.wav"),
        dict(avqa, id=5, question_text="Bad answer?", multi_choice=choices, answer=9, audio_path="clips/tone.wav"),
        dict(
            avqa,
            id=6,
            question_text="What is seen?",
            multi_choice=choices,
            answer=0,
            audio_path="clips/tone.wav",
            question_relation="View",
        ),
        {
            "id": "m1",
            "question": "Which sound is it?",
            "choices": ["Tone", "Noise"],
            "answer": "Noise",
            "audio_id": "clips/noise.wav",
        },
    ]
    path = folder / "avqa_train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def eval_file(avqa_file) -> Path:
    """An MMAU-format question file (a JSON list) on the same clips, audio paths relative to its folder."""

    def item(number, clip, task, answer):
        choices = ["A tone", "Noise", "A dog", "Speech"]
        return {
            "id": f"e{number}",
            "audio_id": f"./clips/{clip}.wav",
            "question": "What is heard?",
            "choices": choices,
            "answer": answer,
            "task": task,
            "difficulty": "easy",
            "sub-category": "Sound source",
        }

    path = avqa_file.parent / "eval.json"
    items = [item(1, "tone", "sound", "A tone"), item(2, "noise", "sound", "Noise"), item(3, "tone", "music", "A tone")]
    path.write_text(json.dumps(items))
    return path


def train_cli(model_dir, train_file, output_dir, *overrides, launcher=(sys.executable, "-m")):
    """`python -m train.grpo` with the tiny recipe, as a user runs it; returns the CompletedProcess."""
    paths = ["--model_name_or_path", model_dir, "--train_file", train_file, "--output_dir", output_dir]
    command = [*launcher, "train.grpo", "--config", TINY_RECIPE, *paths, *overrides]
    return subprocess.run(list(map(str, command)), capture_output=True, text=True, cwd=ROOT)


def log_history(output_dir: Path) -> list[dict]:
    checkpoint = max(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    return json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]


# --- end to end through the CLI ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_model_dir, avqa_file, eval_file, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """Two steps of the tiny recipe, a checkpoint and an evaluation on `eval_file` after each."""
    output_dir = tmp_path_factory.mktemp("grpo") / "out"
    done = train_cli(tiny_model_dir, avqa_file, output_dir, "--eval_file", eval_file, "--eval_steps", 1)
    assert done.returncode == 0, done.stderr[-3000:]
    return output_dir, done


def test_two_steps_log_each_reward_kl_length_and_format_rate(trained):
    output_dir, done = trained
    log = done.stdout + done.stderr
    assert log.count("resolved configuration") == 1
    assert "3 examples kept, 4 skipped" in log  # missing, corrupt, answer out of range, View
    for reason in ("missing audio", "unreadable audio", "answer not among choices", "view question"):
        assert f"'{reason}': 1" in log
    steps = [entry for entry in log_history(output_dir) if "loss" in entry]
    assert [entry["step"] for entry in steps] == [1, 2]
    for metric in LOGGED:
        assert all(metric in entry for entry in steps), metric
        assert f"'{metric}'" in log  # printed as it trains, too
    config = json.loads((output_dir / "run_config.json").read_text())
    assert config["AudioGRPOConfig"]["beta"] == 0.04 and config["DataArguments"]["video_to_audio"] is True


def test_saved_model_answers_through_aqa_ask(trained, tiny_model_dir, avqa_file, aqa_cli):
    output_dir, _ = trained
    clip = avqa_file.parent / "clips" / "tone.wav"
    question = ["--question", "What is it?", "--options", "Tone", "Noise"]
    done = aqa_cli("ask", "--model", output_dir, "--audio", clip, *question, "--json", check=True)
    result = json.loads(done.stdout)
    assert result["answer"] in ("Tone", "Noise") and abs(sum(result["probabilities"].values()) - 1) < 1e-5
    # Training's edits to the config (eos aligned with the tokenizer, use_cache off) do not leak into the model
    saved, loaded = (json.loads((folder / "config.json").read_text()) for folder in (output_dir, tiny_model_dir))
    assert saved["text_config"]["eos_token_id"] == loaded["text_config"]["eos_token_id"]
    assert saved.get("use_cache", True) and "image_token_id" not in saved


def test_evaluation_is_logged_at_the_chosen_steps_and_equals_aqa_mmau_score(trained, aqa_cli):
    output_dir, done = trained
    log = done.stdout + done.stderr
    evaluations = [entry for entry in log_history(output_dir) if "eval_accuracy" in entry]
    assert [entry["step"] for entry in evaluations] == [1, 2] and log.count("'eval_accuracy'") == 2
    # kept in each checkpoint's state, so a checkpoint can be chosen on the dev set
    first = json.loads((output_dir / "checkpoint-1" / "trainer_state.json").read_text())["log_history"]
    assert [entry["step"] for entry in first if "eval_accuracy" in entry] == [1]
    for entry in evaluations:
        predictions = output_dir / "eval" / f"step-{entry['step']}.json"
        scored = json.loads(aqa_cli("mmau", "score", predictions, "--json", check=True).stdout)
        assert (entry["eval_accuracy"], entry["eval_strict_accuracy"]) == (scored["total"], scored["strict"]["total"])
        assert entry["eval_accuracy_sound"] == scored["sound"] and entry["eval_accuracy_music"] == scored["music"]
        assert entry["eval_questions"] == scored["n"] == 3


def test_evaluation_answers_as_aqa_mmau_run_answers_the_checkpoint(trained, eval_file, aqa_cli, tmp_path):
    """The step-2 evaluation ran on the weights checkpoint-2 holds; `aqa mmau run` on that checkpoint (which `aqa
    ask --model` loads the same way) writes the same text for every question."""
    output_dir, _ = trained
    preds = tmp_path / "preds.json"
    run_args = ["--model", output_dir / "checkpoint-2", "--data", eval_file, "--audio-dir", eval_file.parent]
    aqa_cli("mmau", "run", *run_args, "--output", preds, "--batch-size", 8, check=True)
    by_aqa = {row["id"]: row for row in json.loads(preds.read_text())}
    in_training = json.loads((output_dir / "eval" / "step-2.json").read_text())
    assert [row["id"] for row in in_training] == ["e1", "e2", "e3"]  # the file's order
    for row in in_training:
        assert row["raw_output"] == by_aqa[row["id"]]["raw_output"]
        assert row["model_output"] == by_aqa[row["id"]]["model_output"]
        assert row["probabilities"] == pytest.approx(by_aqa[row["id"]]["probabilities"], abs=1e-5)


def test_a_checkpoint_with_mismatched_keys_is_refused_in_one_line(trained, tiny_model_dir, avqa_file, tmp_path, capsys):
    out = tmp_path / "out"
    checkpoint = shutil.copytree(trained[0] / "checkpoint-2", out / "checkpoint-2")
    weights = load_file(str(checkpoint / "model.safetensors"))
    weights["extra.weight"] = weights.pop(sorted(weights)[0])
    save_file(weights, str(checkpoint / "model.safetensors"))
    args = ["--config", TINY_RECIPE, "--model_name_or_path", tiny_model_dir, "--train_file", avqa_file]
    assert run(list(map(str, [*args, "--output_dir", out, "--resume_from_checkpoint", checkpoint]))) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: {checkpoint}: its weights do not match the model (1 missing, e.g. ")
    assert error.endswith("; 1 unexpected, e.g. extra.weight)")


TRUNCATED = [
    # (the file cut to half its size, the start of the reason named)
    ("rng_state.pth", "rng_state.pth is cut short or damaged (File is not a zip file)"),
    ("optimizer.pt", "optimizer.pt is cut short or damaged"),
    ("scheduler.pt", "scheduler.pt is cut short or damaged"),
    ("model.safetensors", "model.safetensors is cut short ("),
    ("trainer_state.json", "trainer_state.json is not JSON ("),
]


@pytest.mark.parametrize("name, reason", TRUNCATED, ids=[case[0] for case in TRUNCATED])
def test_a_truncated_checkpoint_file_is_named_before_the_model_loads(
    name, reason, trained, tiny_model_dir, avqa_file, tmp_path, capsys, monkeypatch
):
    """The issue's case: a truncated RNG state was a traceback after 20-28 s of loading. Now one line names the
    file, and nothing has been loaded."""

    def no_model(*_, **__):
        raise AssertionError("the model was loaded before the checkpoint was checked")

    monkeypatch.setattr(train.grpo, "get_model", no_model)
    out = tmp_path / "out"
    checkpoint = shutil.copytree(trained[0] / "checkpoint-2", out / "checkpoint-2")
    data = (checkpoint / name).read_bytes()
    (checkpoint / name).write_bytes(data[: len(data) // 2])
    args = ["--config", TINY_RECIPE, "--model_name_or_path", tiny_model_dir, "--train_file", avqa_file]
    assert run(list(map(str, [*args, "--output_dir", out, "--resume_from_checkpoint", checkpoint]))) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"error: {checkpoint}: {reason}"), lines[-1]


def test_resume_true_skips_an_incomplete_newest_checkpoint(trained, tiny_model_dir, avqa_file, tmp_path, caplog):
    """A run killed while it wrote checkpoint-2 (the trainer state is written last, so it is missing): `true` warns,
    naming it, and resumes from checkpoint-1, retraining step 2."""
    out = shutil.copytree(trained[0], tmp_path / "out", ignore=shutil.ignore_patterns("eval"))
    (out / "checkpoint-2" / "trainer_state.json").unlink()
    (out / "checkpoint-2" / "rng_state.pth").unlink()
    args = ["--config", TINY_RECIPE, "--model_name_or_path", tiny_model_dir, "--train_file", avqa_file]
    assert run(list(map(str, [*args, "--output_dir", out, "--resume_from_checkpoint", "true"]))) == 0
    skipped = [record.getMessage() for record in caplog.records if "skipping" in record.getMessage()]
    assert skipped == [
        f"skipping {out / 'checkpoint-2'}, which cannot be resumed: not a training checkpoint (no trainer_state.json)"
    ]
    steps = [entry["step"] for entry in log_history(out) if "loss" in entry]
    assert steps == [1, 2], "step 1 from checkpoint-1's state, step 2 trained again"


def test_resume_true_with_no_good_checkpoint_names_the_newest(tmp_path, tiny_model_dir, avqa_file, capsys):
    out = tmp_path / "out"
    for step in (1, 2):
        (out / f"checkpoint-{step}").mkdir(parents=True)
    args = ["--config", TINY_RECIPE, "--model_name_or_path", tiny_model_dir, "--train_file", avqa_file]
    assert run(list(map(str, [*args, "--output_dir", out, "--resume_from_checkpoint", "true"]))) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: --resume_from_checkpoint true: no checkpoint in {out} can be resumed (the newest, checkpoint-2: not "
        "a training checkpoint (no trainer_state.json))"
    )


def test_two_processes_on_cpu(tiny_model_dir, avqa_file, eval_file, tmp_path):
    """torchrun gives accelerate MULTI_CPU with gloo (`accelerate launch --cpu --num_processes 2` starts only one
    process with accelerate 1.15)."""
    one_step = ["--max_steps", 1, "--save_strategy", "no", "--activation_checkpointing", "false"]
    one_step += ["--eval_file", eval_file, "--eval_steps", 1]
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m")
    done = train_cli(tiny_model_dir, avqa_file, tmp_path / "out", *one_step, launcher=torchrun)
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    # each process generates one prompt's 4 completions, so a generation holds 2 prompts
    assert "2 process(es), DistributedType.MULTI_CPU on cpu; each generation: 2 prompt(s) x 4 completions" in log
    assert log.count("resolved configuration") == 1  # the main process logs, the other stays quiet
    assert "'rewards/accuracy_reward/mean'" in log
    assert (tmp_path / "out" / "model.safetensors").is_file()
    # each process answered part of the eval file; the gathered answers are all there, in the file's order
    predictions = json.loads((tmp_path / "out" / "eval" / "step-1.json").read_text())
    assert [row["id"] for row in predictions] == ["e1", "e2", "e3"] and all("model_output" in r for r in predictions)
    assert log.count("'eval_accuracy'") == 1 and "'eval_questions': 3" in log


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train_file", "no/such.jsonl"], "no/such.jsonl: no such training file"),
        (["--model_name_or_path", "no-such-model-dir"], "no-such-model-dir: no such model directory"),
        (["--model_name_or_path", "someone/not-cached"], "HF_HUB_OFFLINE is set: build the offline tiny model"),
        (["--reward_funcs", "accuracy"], "unknown reward 'accuracy'"),
        (["--resume_from_checkpoint", "no/such/checkpoint-9"], "no such checkpoint directory"),
        (["--num_generations", "3"], "bad training settings: generation_batch_size (4) must be divisible by"),
        (["--audio_channel", "left"], "bad training settings: --audio_channel must be one of mix, first"),
        # settings that used to fail late, with a traceback, after the model had loaded
        (["--cast_lm_head_to_fp32", "true"], "--cast_lm_head_to_fp32 is not supported here: TRL 1.16 reads"),
        (["--remove_unused_columns", "true"], "--remove_unused_columns is not supported here"),
        (["--resume_from_checkpoint", "true"], "--resume_from_checkpoint true: OUT holds no checkpoint-N folder"),
        (["--use_vllm", "true"], "--use_vllm is not supported here: TRL's vLLM rollouts pass images only"),
        (["--use_transformers_continuous_batching", "true"], "--use_transformers_continuous_batching is not supported"),
        (["--model_init_kwargs", '{"dtype": "float32"}'], "--model_init_kwargs is not supported here"),
        (["--eval_strategy", "steps"], "evaluation needs questions: give --eval_file"),
        (["--eval_steps", "100"], "evaluation needs questions: give --eval_file"),
        (["--use_peft", "true", "--resume_from_checkpoint", "CHECKPOINT"], "holds no LoRA adapter: a full fine-tune"),
        (["--eval_file", "no/such.json"], "no/such.json: no such eval file"),
        # 3 usable rows, and a step takes 16 completions / 4 per prompt = 4 prompts: no step at all
        (
            ["--per_device_train_batch_size", "16"],
            "3 training row(s) make no optimizer step: one step takes 4 prompts (1 process(es) x "
            "per_device_train_batch_size 16 completions x steps_per_generation 1 / num_generations 4)",
        ),
        (
            ["--eval_file", "EVAL", "--eval_strategy", "steps", "--load_best_model_at_end", "true"],
            "best_model accuracy",
        ),
    ],
)
def test_bad_settings_are_one_line_errors_before_the_model_loads(
    args, message, avqa_file, eval_file, tiny_model_dir, tmp_path, capsys, monkeypatch
):
    def no_model(*_, **__):
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr(train.grpo, "get_model", no_model)
    out = tmp_path / "out"
    base = ["--config", str(TINY_RECIPE), "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out)]
    train_file = [] if "--train_file" in args else ["--train_file", str(avqa_file)]
    checkpoint = tmp_path / "checkpoint-2"  # a full fine-tune's, as far as the checks before loading can tell
    checkpoint.mkdir()
    for name in ("trainer_state.json", "optimizer.pt", "model.safetensors"):
        (checkpoint / name).write_text("{}")
    args = [{"EVAL": str(eval_file), "CHECKPOINT": str(checkpoint)}.get(arg, arg) for arg in args]
    assert run([*base, *train_file, *args]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and message.replace("OUT", str(out)) in error


@pytest.mark.parametrize("think", [False, True])
def test_each_row_carries_the_prompt_mode_its_format_reward_needs(avqa_file, think):
    """`--think true` asks the thinking prompt, and the rows tell format_reward to hold completions to R1-AQA's
    think-mode pattern (its rewards.py), not the answer-only one."""
    dataset = get_dataset(DataArguments(train_file=str(avqa_file), think=think))
    row = dataset[0]
    assert row["think"] is think and ("<think>" in str(row["prompt"])) is think
    [format_reward] = get_rewards(["format_reward"])
    completion = "<think>a steady tone</think>\n<answer>Tone</answer>"
    columns = {name: [row[name]] for name in ("answer", "options", "id", "think")}
    assert format_reward([completion], **columns) == [1.0 if think else 0.0]


def test_a_missing_logging_backend_is_a_one_line_error(avqa_file, tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train.common, "installed", lambda package: False)
    paths = ["--model_name_or_path", str(tiny_model_dir), "--train_file", str(avqa_file), "--output_dir", str(tmp_path)]
    assert run(["--config", str(TINY_RECIPE), *paths, "--report_to", "tensorboard"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == "error: --report_to tensorboard needs the tensorboard package: pip install tensorboard"


# --- in-process: the audio path, LoRA, the learning signal ---------------------------------------------------------


class AudioGuard:
    """Counts forward passes of Qwen2AudioModel whose input_ids hold <|AUDIO|>, with and without input_features."""

    def __init__(self, model):
        self.audio_token_id = model.config.audio_token_id
        self.with_features = 0
        self.without_features = 0
        self.handles = []
        self.watch(model)

    def watch(self, model) -> None:
        # Qwen2AudioModel is called through __call__ by generation, the fused log-prob head and PEFT alike
        self.handles.append(model.model.register_forward_pre_hook(self.check, with_kwargs=True))

    def check(self, module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None or not bool((input_ids == self.audio_token_id).any()):
            return
        if kwargs.get("input_features") is None:
            self.without_features += 1
        else:
            self.with_features += 1


# Two prompts x 2 completions of 4 tokens, on the CPU in fp32
SMALL_RUN = dict(use_cpu=True, bf16=False, num_generations=2, per_device_train_batch_size=2, max_completion_length=4)
SMALL_RUN |= dict(max_steps=2, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, seed=0)
SMALL_RUN |= dict(activation_checkpointing=False)  # recomputation only costs time here


def make_trainer(
    model_dir, data_file, output_dir, reward_funcs=None, model_options=None, eval_set=None, prepare=None, **options
):
    """The wiring of train.grpo.main, with a small in-process config; `prepare(model)` runs before the trainer."""
    args = AudioGRPOConfig(**{**SMALL_RUN, "output_dir": str(output_dir), **options})
    model_args = AudioModelConfig(model_name_or_path=str(model_dir), dtype="float32", **(model_options or {}))
    model = get_model(model_args)
    if prepare is not None:
        prepare(model)
    guard = AudioGuard(model)
    trainer = AudioGRPOTrainer(
        model=model,
        reward_funcs=reward_funcs or get_rewards(args.reward_funcs),
        args=args,
        train_dataset=get_dataset(DataArguments(train_file=str(data_file))),
        processing_class=get_processor(model_args),
        peft_config=get_peft_config(model_args),
        eval_set=eval_set,
    )
    if trainer.ref_model is not None:  # beta > 0 without LoRA: TRL loads a separate reference model
        guard.watch(trainer.ref_model)
    return trainer, guard, model_args


def test_audio_guard_catches_a_pass_without_features(tiny_model):
    """The guard itself: a forward pass on <|AUDIO|> ids without features (which the model accepts silently)."""
    guard = AudioGuard(tiny_model.hf)
    try:
        input_ids = torch.tensor([[1, 2, tiny_model.hf.config.audio_token_id, 3]])
        with torch.no_grad():
            tiny_model.hf(input_ids=input_ids)
    finally:
        guard.handles[0].remove()
    assert (guard.without_features, guard.with_features) == (1, 0)


def test_every_training_forward_pass_gets_audio_features(tiny_model_dir, avqa_file, tmp_path):
    # beta > 0 runs the reference pass; one generation for two steps (steps_per_generation 2) runs the old-policy pass
    trainer, guard, _ = make_trainer(tiny_model_dir, avqa_file, tmp_path, beta=0.04, steps_per_generation=2)
    trainer.train()
    assert guard.without_features == 0
    # generation prefill 1 + old policy 2 chunks + reference 2 chunks + policy 2 steps
    assert guard.with_features >= 7


def test_lora_trains_only_the_language_model_and_saves_a_loadable_model(tiny_model_dir, avqa_file, tmp_path):
    trainer, guard, model_args = make_trainer(
        tiny_model_dir, avqa_file, tmp_path, model_options=dict(use_peft=True), beta=0.04, steps_per_generation=2
    )
    assert model_args.lora_target_modules == LANGUAGE_MODEL_LORA_TARGETS
    trained = [name for name, parameter in trainer.model.named_parameters() if parameter.requires_grad]
    assert trained and all(".language_model.layers." in name and ".lora_" in name for name in trained)
    trainer.train()
    assert guard.without_features == 0 and guard.with_features >= 7  # the reference pass runs with adapters off
    save_final(trainer, model_args, trainer.args)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    merged = load_model(str(tmp_path), precision="fp32", device="cpu")
    assert type(merged.hf).__name__ == "Qwen2AudioForConditionalGeneration"


def low_byte_share(completion_ids, **kwargs) -> list[float]:
    """Toy dense reward: the share of completion tokens among the first 128 byte tokens (~44% at random)."""
    return [sum(token < 128 for token in ids) / max(len(ids), 1) for ids in completion_ids]


def test_policy_learns_a_dense_reward_through_the_audio_path(tiny_model_dir, avqa_file, tmp_path):
    """GRPO pushes the mean reward up (the gradient has the right sign), and the projector, which only sees the
    audio features, is trained (the audio reaches the loss). The frozen encoder does not move."""
    # One prompt x 4 completions of 16 tokens per step, a high constant learning rate, no KL
    run = dict(num_generations=4, per_device_train_batch_size=4, max_completion_length=16, beta=0.0, max_steps=12)
    run |= dict(learning_rate=2e-2, lr_scheduler_type="constant")
    frozen = dict(freeze_audio_encoder=True)
    trainer, guard, _ = make_trainer(
        tiny_model_dir, avqa_file, tmp_path, reward_funcs=[low_byte_share], model_options=frozen, **run
    )
    model = trainer.model
    projector = model.model.multi_modal_projector.linear.weight.detach().clone()
    encoder = model.model.audio_tower.conv1.weight.detach().clone()
    trainer.train()
    rewards = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
    assert len(rewards) == 12
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last > first + 0.15, rewards
    assert guard.without_features == 0
    assert not torch.equal(model.model.multi_modal_projector.linear.weight, projector)
    assert torch.equal(model.model.audio_tower.conv1.weight, encoder)


def test_evaluation_between_steps_leaves_training_unchanged(tiny_model_dir, avqa_file, eval_file, tmp_path):
    """The same run with and without an evaluation after every step: identical losses, rewards and weights. With
    --load_best_model_at_end the weights of the best checkpoint by eval accuracy come back at the end."""
    runs = {}
    evaluated = dict(eval_strategy="steps", eval_steps=1, save_strategy="steps", save_steps=1)
    evaluated |= dict(load_best_model_at_end=True, metric_for_best_model="accuracy")
    for name, options in (("plain", {}), ("evaluated", evaluated)):
        eval_set = load_eval_set(str(eval_file), None, DataOptions()) if options else None
        trainer, _, _ = make_trainer(
            tiny_model_dir,
            avqa_file,
            tmp_path / name,
            reward_funcs=[low_byte_share],
            learning_rate=1e-3,
            eval_set=eval_set,
            **options,
        )
        trainer.train()
        runs[name] = trainer
    plain, evaluated = runs["plain"], runs["evaluated"]
    assert [entry["step"] for entry in evaluated.state.log_history if "eval_accuracy" in entry] == [1, 2]
    assert not any("eval_accuracy" in entry for entry in plain.state.log_history)
    keys = ("loss", "grad_norm", "reward", "rewards/low_byte_share/mean", "completions/mean_length", "kl")
    steps = [
        [{key: entry[key] for key in keys} for entry in trainer.state.log_history if "loss" in entry]
        for trainer in (plain, evaluated)
    ]
    assert steps[0] == steps[1] and len(steps[0]) == 2
    assert evaluated.model.training  # back in training mode
    after_two_steps = training_weights(tmp_path / "evaluated" / "checkpoint-2", lora=False)
    trained = plain.model.state_dict()
    assert all(torch.equal(trained[name], after_two_steps[name]) for name in trained)
    best = training_weights(Path(evaluated.state.best_model_checkpoint), lora=False)
    final = evaluated.model.state_dict()
    assert all(torch.equal(final[name], best[name]) for name in final)
    if evaluated.state.best_model_checkpoint.endswith("checkpoint-1"):
        assert any(not torch.equal(final[name], after_two_steps[name]) for name in final)


def training_weights(checkpoint: Path, lora: bool) -> dict[str, torch.Tensor]:
    """A checkpoint's trained weights: the adapter as PEFT saved it, or the full model by its in-memory names."""
    if lora:
        return load_file(str(checkpoint / "adapter_model.safetensors"))
    return load_model(str(checkpoint), precision="fp32", device="cpu").hf.state_dict()


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_resume_restores_the_trained_weights(lora, tiny_model_dir, avqa_file, tmp_path, resume_spy):
    """Two steps saved every step, nothing changed, resumed to step 3: the weights loaded at resume are
    checkpoint-2's, tensor for tensor (not the base model's), and no key is reported missing or unexpected.
    (A dense reward, so that two steps on random weights change them.)"""
    steps = dict(reward_funcs=[low_byte_share], model_options=dict(use_peft=lora), save_strategy="steps", save_steps=1)
    trainer, _, _ = make_trainer(tiny_model_dir, avqa_file, tmp_path, learning_rate=1e-3, **steps)
    trainer.train()
    checkpoint = tmp_path / "checkpoint-2"
    resumed, _, _ = make_trainer(tiny_model_dir, avqa_file, tmp_path, learning_rate=1e-3, max_steps=3, **steps)
    resumed.add_callback(resume_spy)
    resumed.train(resume_from_checkpoint=str(checkpoint))

    saved = training_weights(checkpoint, lora)
    assert resume_spy.loaded is not None and resume_spy.loaded.keys() == saved.keys()
    assert all(torch.equal(resume_spy.loaded[name], saved[name]) for name in saved)
    if lora:  # LoRA's B matrices start at zero: non-zero ones are trained
        assert any(name.endswith("lora_B.weight") and bool(tensor.any()) for name, tensor in saved.items())
    else:
        base = training_weights(tiny_model_dir, lora=False)
        assert any(not torch.equal(base[name], saved[name]) for name in saved)
    assert not [message for message in resume_spy.warnings if "keys" in message]
    assert [entry["step"] for entry in resumed.state.log_history if "loss" in entry] == [1, 2, 3]


def two_length_file(avqa_file: Path, folder: Path) -> Path:
    """Two questions on clips of 2 s and 1 s, so that their rows hold different numbers of <|AUDIO|> tokens."""
    clips = avqa_file.parent / "clips"
    rows = [
        {"id": i, "question_text": "What is it?", "multi_choice": ["Tone", "Noise"], "answer": i, "audio_path": str(p)}
        for i, p in enumerate([clips / "tone.wav", clips / "noise.wav"])
    ]
    path = folder / "two_lengths.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_features_swapped_between_two_rows_are_caught(tiny_model_dir, avqa_file, tmp_path):
    """A deliberate misalignment in the first micro-batch: the first completion of one question gets the features of
    the other question's clip (and the other way round). The row counts still match; the per-row check does not."""
    two_prompts = dict(num_generations=2, per_device_train_batch_size=4, max_steps=1)
    trainer, _, _ = make_trainer(tiny_model_dir, two_length_file(avqa_file, tmp_path), tmp_path, **two_prompts)
    generate = trainer._generate_and_score_completions

    def misaligned(inputs):
        output = generate(inputs)
        assert not torch.equal(output["feature_attention_mask"][0], output["feature_attention_mask"][3])
        for key in AUDIO_FEATURES:
            output[key] = output[key][[3, 1, 2, 0]]
        return output

    trainer._generate_and_score_completions = misaligned
    with pytest.raises(RuntimeError, match=r"<\|AUDIO\|> tokens but its audio features make .* encoder outputs"):
        trainer.train()


def perturb(model) -> None:
    """Move the policy away from the reference (TRL reloads that from the checkpoint), so that the KL is not 0."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in (model.lm_head.weight, model.model.multi_modal_projector.linear.weight):
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


def r1_aqa_loss(policy, reference, batch, rewards, beta, group_size):
    """R1-AQA's loss, from its trainer's formula, on one generation batch (rows in groups of `group_size`):
    per token -(exp(logp - logp.detach()) * A - beta * (exp(ref - logp) - (ref - logp) - 1)), A = (r - group mean) /
    (group std + 1e-4), averaged over each completion's tokens, then over completions."""
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    audio = {key: batch[key] for key in AUDIO_FEATURES}
    length = batch["completion_ids"].size(1)

    def token_logps(model):
        logits = model(input_ids=input_ids, attention_mask=attention_mask, **audio).logits[:, -length - 1 : -1]
        return F.log_softmax(logits.float(), dim=-1).gather(-1, batch["completion_ids"].unsqueeze(-1)).squeeze(-1)

    logp = token_logps(policy)
    with torch.no_grad():
        ref = token_logps(reference)
    groups = rewards.view(-1, group_size)
    advantages = (rewards - groups.mean(1).repeat_interleave(group_size)) / (groups.std(1) + 1e-4).repeat_interleave(
        group_size
    )
    kl = torch.exp(ref - logp) - (ref - logp) - 1
    per_token = -(torch.exp(logp - logp.detach()) * advantages.unsqueeze(1) - beta * kl)
    mask = batch["completion_mask"].float()
    return ((per_token * mask).sum(1) / mask.sum(1)).mean(), advantages


@pytest.mark.parametrize("bias_corrected", [False, True], ids=["r1-aqa", "trl-default"])
def test_one_step_loss_and_gradient_are_r1_aqas_formula(bias_corrected, tiny_model_dir, avqa_file, tmp_path):
    """One GRPO step on the tiny model with beta 0.04: the loss and its gradient on two parameters equal R1-AQA's
    formula computed here by hand; TRL's default bias-corrected KL gives the same loss but another gradient.
    The rollouts sample as R1-AQA's did: top-k 50, top-p 1, temperature 1, no repetition penalty."""
    run = dict(num_generations=4, per_device_train_batch_size=4, max_completion_length=8, max_steps=1)
    run |= dict(beta=0.04, use_bias_correction_kl=bias_corrected, max_grad_norm=1e9)
    trainer, _, _ = make_trainer(
        tiny_model_dir, avqa_file, tmp_path, reward_funcs=[low_byte_share], prepare=perturb, **run
    )
    model = trainer.model
    policy_weights = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    watched = {"lm_head.weight": model.lm_head.weight, "projector": model.model.multi_modal_projector.linear.weight}
    grads = {name: [] for name in watched}
    for name, parameter in watched.items():
        parameter.register_hook(lambda grad, name=name: grads[name].append(grad.clone()))
    seen = {}
    generate, compute_loss, sample = trainer._generate_and_score_completions, trainer._compute_loss, model.generate

    def sampling(*args, **kwargs):
        seen["config"] = model._prepare_generation_config(kwargs["generation_config"])[0]
        return sample(*args, **kwargs)

    def keep_batch(inputs):
        seen["batch"] = generate(inputs)
        return seen["batch"]

    def keep_loss(model, inputs):
        seen["loss"] = compute_loss(model, inputs)
        return seen["loss"]

    model.generate, trainer._generate_and_score_completions, trainer._compute_loss = sampling, keep_batch, keep_loss
    trainer.train()
    config = seen["config"]
    assert (config.do_sample, config.top_k, config.top_p, config.temperature) == (True, 50, 1.0, 1.0)
    assert config.repetition_penalty == 1.0

    # By hand, on the policy as it was at the step and the reference TRL loaded from the checkpoint
    batch = seen["batch"]
    policy = Qwen2AudioForConditionalGeneration.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    policy.load_state_dict(policy_weights)
    reference = Qwen2AudioForConditionalGeneration.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    assert all(torch.equal(batch["prompt_ids"][0], row) for row in batch["prompt_ids"])  # one group: one question
    stops = torch.tensor(policy.generation_config.eos_token_id)
    ids, mask = batch["completion_ids"], batch["completion_mask"]
    for row, row_mask in zip(ids, mask):  # up to and including the first end token
        ends = torch.isin(row, stops).nonzero()
        assert int(row_mask.sum()) == (int(ends[0]) + 1 if len(ends) else len(row))
    rewards = torch.tensor(low_byte_share([row[m.bool()].tolist() for row, m in zip(ids, mask)]))
    loss, advantages = r1_aqa_loss(policy, reference, batch, rewards, beta=0.04, group_size=4)
    loss.backward()

    assert advantages.abs().sum() > 0 and torch.allclose(batch["advantages"], advantages, atol=1e-6)
    assert seen["loss"].item() == pytest.approx(loss.item(), rel=1e-5, abs=1e-7)
    by_hand = {
        "lm_head.weight": policy.lm_head.weight.grad,
        "projector": policy.model.multi_modal_projector.linear.weight.grad,
    }
    for name in watched:
        [trained] = grads[name]
        assert by_hand[name].abs().max() > 0
        same = torch.allclose(trained, by_hand[name], rtol=1e-4, atol=1e-7)
        assert same != bias_corrected, name


# --- recipes ---------------------------------------------------------------------------------------------------------


def test_paper_recipe_runs_on_the_tiny_model_with_r1_aqas_settings(tiny_model_dir, avqa_file, tmp_path):
    """`python -m train.grpo --config grpo_paper.yaml`, one step on the CPU: only the model, data, precision and
    length of the run are overridden; the resolved settings written to run_config.json are the recipe's."""
    out = tmp_path / "paper"
    command = [sys.executable, "-m", "train.grpo", "--config", PAPER_RECIPE, "--model_name_or_path", tiny_model_dir]
    command += ["--train_file", avqa_file, "--output_dir", out, "--dtype", "float32", "--bf16", "false"]
    command += ["--use_cpu", "true", "--max_steps", 1, "--save_strategy", "no"]
    done = subprocess.run(list(map(str, command)), capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    resolved = json.loads((out / "run_config.json").read_text())["AudioGRPOConfig"]
    expected = dict(use_bias_correction_kl=False, top_k=50, top_p=1.0, temperature=1.0, loss_type="grpo")
    expected |= dict(scale_rewards="group", beta=0.04, num_generations=8, max_completion_length=256)
    expected |= dict(learning_rate=1e-06, gradient_accumulation_steps=2, per_device_train_batch_size=8)
    assert {key: resolved[key] for key in expected} == expected
    assert resolved["reward_funcs"] == ["accuracy_reward", "format_reward"]
    log = done.stdout + done.stderr
    assert log.count("'rewards/accuracy_reward/mean'") == 1 and (out / "model.safetensors").is_file()


def test_paper_recipe_has_the_published_hyper_parameters():
    recipe = ROOT / "train" / "recipes" / "grpo_paper.yaml"
    # --use_cpu only so that bf16 parses on a machine without a GPU
    data, training, model = parse_config(CONFIG_CLASSES, ["--config", str(recipe), "--use_cpu", "true"])
    assert model.model_name_or_path == "Qwen/Qwen2-Audio-7B-Instruct"
    assert (model.dtype, model.use_peft, model.freeze_audio_encoder) == ("bfloat16", False, False)  # full fine-tune
    # 1 prompt x 8 generations per GPU, accumulated twice
    assert (training.num_generations, training.per_device_train_batch_size) == (8, 8)
    assert training.gradient_accumulation_steps == 2
    assert (training.learning_rate, training.beta, training.temperature) == (1e-6, 0.04, 1.0)
    assert training.max_completion_length == 256
    assert (training.bf16, training.max_steps, training.save_steps, training.seed) == (True, 1000, 100, 42)
    assert training.reward_funcs == ["accuracy_reward", "format_reward"] and data.video_to_audio
    assert data.audio_channel == "first"  # R1-AQA's data loader kept waveform[0]


@pytest.mark.parametrize("recipe", sorted((ROOT / "train" / "recipes").glob("grpo_*.yaml")), ids=lambda p: p.stem)
def test_every_grpo_recipe_has_r1_aqas_loss_sampling_and_rewards(recipe):
    _, training, _ = parse_config(CONFIG_CLASSES, ["--config", str(recipe), "--use_cpu", "true"])
    assert (training.use_bias_correction_kl, training.loss_type, training.scale_rewards) == (False, "grpo", "group")
    assert (training.top_k, training.top_p, training.temperature, training.beta) == (50, 1.0, 1.0, 0.04)
    assert training.reward_funcs == ["accuracy_reward", "format_reward"]


def test_accelerate_config_is_zero3_with_cpu_offload_on_8_gpus():
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(ROOT / "train" / "recipes" / "accelerate_zero3.yaml"))
    assert (config.distributed_type, config.num_processes, config.num_machines) == ("DEEPSPEED", 8, 1)
    deepspeed = config.deepspeed_config
    assert deepspeed["zero_stage"] == 3 and deepspeed["offload_param_device"] == deepspeed["offload_optimizer_device"]
    assert deepspeed["offload_param_device"] == "cpu" and config.mixed_precision == "bf16"


def test_single_gpu_recipe_is_qlora_on_the_language_model():
    recipe = ROOT / "train" / "recipes" / "grpo_qlora_24gb.yaml"
    _, training, model = parse_config(CONFIG_CLASSES, ["--config", str(recipe), "--use_cpu", "true"])
    assert model.use_peft and model.load_in_4bit and model.lora_target_modules == LANGUAGE_MODEL_LORA_TARGETS
    assert training.num_generations == 8 and training.gradient_checkpointing
