"""GRPO training on the tiny checkpoint: end to end from AVQA-format JSONL with real audio, resume, audio in every
forward pass, a learning signal, LoRA on the language model only, two processes, recipes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from trl import get_peft_config

import train.common
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
from train.grpo import CONFIG_CLASSES, get_dataset, get_rewards, run
from train.trainer import AudioGRPOTrainer

TINY_RECIPE = ROOT / "train" / "recipes" / "grpo_tiny.yaml"
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
    sox("-n", "-r", "16000", str(folder / "clips" / "noise.wav"), "synth", "2", "pinknoise", "vol", "0.3")
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
def trained(tiny_model_dir, avqa_file, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """Two steps of the tiny recipe, a checkpoint after each."""
    output_dir = tmp_path_factory.mktemp("grpo") / "out"
    done = train_cli(tiny_model_dir, avqa_file, output_dir)
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


def test_resume_continues_the_step_count(trained, tiny_model_dir, avqa_file):
    output_dir, _ = trained
    resume = ["--resume_from_checkpoint", output_dir / "checkpoint-2", "--max_steps", 3]
    done = train_cli(tiny_model_dir, avqa_file, output_dir, *resume)
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert log.count("'rewards/accuracy_reward/mean'") == 1  # only step 3 was trained in this run
    assert [entry["step"] for entry in log_history(output_dir) if "loss" in entry] == [1, 2, 3]


def test_two_processes_on_cpu(tiny_model_dir, avqa_file, tmp_path):
    """torchrun gives accelerate MULTI_CPU with gloo (`accelerate launch --cpu --num_processes 2` starts only one
    process with accelerate 1.15)."""
    one_step = ["--max_steps", 1, "--save_strategy", "no", "--activation_checkpointing", "false"]
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m")
    done = train_cli(tiny_model_dir, avqa_file, tmp_path / "out", *one_step, launcher=torchrun)
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    # each process generates one prompt's 4 completions, so a generation holds 2 prompts
    assert "2 process(es), DistributedType.MULTI_CPU on cpu; each generation: 2 prompt(s) x 4 completions" in log
    assert log.count("resolved configuration") == 1  # the main process logs, the other stays quiet
    assert "'rewards/accuracy_reward/mean'" in log
    assert (tmp_path / "out" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train_file", "no/such.jsonl"], "no/such.jsonl: no such training file"),
        (["--reward_funcs", "accuracy"], "unknown reward 'accuracy'"),
        (["--resume_from_checkpoint", "no/such/checkpoint-9"], "no such checkpoint directory"),
        (["--num_generations", "3"], "bad training settings: generation_batch_size (4) must be divisible by"),
    ],
)
def test_user_errors_are_one_line(args, message, avqa_file, tiny_model_dir, tmp_path, capsys):
    base = ["--config", str(TINY_RECIPE), "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(tmp_path)]
    train_file = [] if "--train_file" in args else ["--train_file", str(avqa_file)]
    assert run([*base, *train_file, *args]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and message in error


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


def make_trainer(model_dir, data_file, output_dir, reward_funcs=None, model_options=None, **options):
    """The wiring of train.grpo.main, with a small in-process config."""
    args = AudioGRPOConfig(**{**SMALL_RUN, "output_dir": str(output_dir), **options})
    model_args = AudioModelConfig(model_name_or_path=str(model_dir), dtype="float32", **(model_options or {}))
    model = get_model(model_args)
    guard = AudioGuard(model)
    trainer = AudioGRPOTrainer(
        model=model,
        reward_funcs=reward_funcs or get_rewards(args.reward_funcs),
        args=args,
        train_dataset=get_dataset(DataArguments(train_file=str(data_file))),
        processing_class=get_processor(model_args),
        peft_config=get_peft_config(model_args),
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


# --- recipes ---------------------------------------------------------------------------------------------------------


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
