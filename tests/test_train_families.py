"""Training every other family (the Qwen2.5-Omni and Qwen3-Omni thinkers, Audio Flamingo 3) on its tiny checkpoint:
GRPO and SFT for two steps with evaluation, resumed from checkpoint-1 with the weights restored tensor for tensor; the
per-row audio check catching two swapped rows (Audio Flamingo 3: rows of different window counts); two processes;
a learning signal over several seeds; the mixture-of-experts load-balancing loss counted exactly once; what is frozen
and what LoRA adapts, by family; the recipes and their memory. Qwen2-Audio's own are in test_grpo.py and test_sft.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file
from test_grpo import make_trainer

import aqa
import train.grpo
from aqa.eval.benchmarks import MMAU
from aqa.eval.score import score_records
from aqa.families import FAMILIES
from aqa.model import check_quantizable
from aqa.options import DecodingOptions
from bench import grpo_step, train_memory
from train import sft
from train.common import get_examples, get_lora_config, get_model, get_processor, save_final, under
from train.config import AudioModelConfig, DataArguments, parse_config
from train.data import Example
from train.rewards import REWARDS
from train.trainer import AudioGRPOTrainer

NEW = ["qwen2.5-omni", "qwen3-omni", "audio-flamingo-3"]
GRPO_TINY = ROOT / "train" / "recipes" / "grpo_tiny.yaml"
SFT_TINY = ROOT / "train" / "recipes" / "sft_tiny_cpu.yaml"
FAMILY_RECIPES = sorted((ROOT / "train" / "recipes").glob("*/grpo_*.yaml"))


def sox(*args: str) -> None:
    subprocess.run(["sox", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Clips of 1 s, 2 s and 35 s (two 30 s windows for Audio Flamingo 3); a training file of two questions on the
    short ones, another pairing a short clip with the long one, and an MMAU-format eval file."""
    folder = tmp_path_factory.mktemp("families-data")
    sox("-n", "-r", "16000", str(folder / "tone.wav"), "synth", "1", "sine", "440")
    sox("-n", "-r", "16000", str(folder / "noise.wav"), "synth", "2", "pinknoise", "vol", "0.3")
    sox("-n", "-r", "16000", str(folder / "long.wav"), "synth", "35", "sine", "220")

    def rows(clips):
        return "".join(
            json.dumps(
                {
                    "id": i,
                    "question_text": "What is it?",
                    "multi_choice": ["Tone", "Noise"],
                    "answer": i % 2,
                    "audio_path": clip,
                    "question_relation": "Sound",
                }
            )
            + "\n"  # fmt: skip
            for i, clip in enumerate(clips)
        )

    (folder / "train.jsonl").write_text(rows(["tone.wav", "noise.wav"]))
    (folder / "windows.jsonl").write_text(rows(["long.wav", "tone.wav"]))
    items = [
        {
            "id": f"e{i}",
            "audio_id": clip,
            "question": "What is heard?",
            "choices": ["A tone", "Noise"],
            "answer": answer,
            "task": "sound",
            "difficulty": "easy",
            "sub-category": "Sound source",
        }  # fmt: skip
        for i, (clip, answer) in enumerate([("tone.wav", "A tone"), ("noise.wav", "Noise")])
    ]
    (folder / "eval.json").write_text(json.dumps(items))
    return {name: folder / name for name in ("train.jsonl", "windows.jsonl", "eval.json")}


def low_byte_share(completion_ids, **kwargs) -> list[float]:
    """A dense toy reward (the share of completion tokens among the first 128 byte tokens), so that two steps on
    random weights move them; registered under this name for the command-line runs."""
    return [sum(token < 128 for token in ids) / max(len(ids), 1) for ids in completion_ids]


@pytest.fixture
def dense_reward(monkeypatch):
    monkeypatch.setitem(REWARDS, "low_byte_share", low_byte_share)


def spied(module, name: str, spy, monkeypatch) -> None:
    """Attach `spy` (conftest's resume_spy) to every trainer `module.name` builds."""
    trainer_class = getattr(module, name)

    class Spied(trainer_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(spy)

    monkeypatch.setattr(module, name, Spied)


def weights_of(name: str, folder: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's weights by their in-memory names, as transformers' own loading gives them."""
    return FAMILIES[name].model_class().from_pretrained(str(folder), dtype=torch.float32).state_dict()


def steps_logged(folder: Path) -> list[int]:
    state = json.loads((folder / "trainer_state.json").read_text())
    return [entry["step"] for entry in state["log_history"] if "loss" in entry]


def assert_restored(spy, saved: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> None:
    """The weights at the start of the resumed run are the checkpoint's, tensor for tensor, and they are trained
    ones (not the base model's); no key was reported missing or unexpected."""
    assert spy.loaded is not None and spy.loaded.keys() == saved.keys()
    assert all(torch.equal(spy.loaded[name], saved[name]) for name in saved)
    assert any(not torch.equal(saved[name], base[name]) for name in saved)
    assert not [message for message in spy.warnings if "keys" in message]


# --- two steps, evaluation, saving and resuming: GRPO and SFT -------------------------------------------------------


@pytest.mark.parametrize("name", NEW)
def test_grpo_two_steps_evaluate_then_resume_from_checkpoint_1(
    name, family_dirs, data, tmp_path, dense_reward, resume_spy, monkeypatch
):
    """`python -m train.grpo` with the tiny recipe (in process): two steps logged with rewards and KL, an evaluation
    at each checkpoint, the last equal to MMAU's scoring of its predictions, a model `aqa` loads as the family's
    answering model (an Omni checkpoint's thinker alone); resumed from checkpoint-1, the weights are checkpoint-1's."""
    model_dir, out = family_dirs[name], tmp_path / "out"
    args = ["--config", GRPO_TINY, "--model_name_or_path", model_dir, "--train_file", data["train.jsonl"]]
    args += ["--reward_funcs", "low_byte_share", "--max_completion_length", 4, "--save_steps", 1]
    assert train.grpo.run(list(map(str, [*args, "--output_dir", out, "--eval_file", data["eval.json"]]))) == 0
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    steps = [entry for entry in state["log_history"] if "loss" in entry]
    assert [entry["step"] for entry in steps] == [1, 2] and all("kl" in entry for entry in steps)
    evaluations = [entry for entry in state["log_history"] if "eval_accuracy" in entry]
    assert [entry["step"] for entry in evaluations] == [1, 2]  # at every checkpoint
    evaluation = evaluations[-1]
    predictions = out / "eval" / "step-2.json"
    scored = score_records(json.loads(predictions.read_text()), MMAU)
    assert evaluation["eval_accuracy"] == scored.official.total.percent and evaluation["eval_questions"] == 2
    saved = aqa.load_model(str(out), precision="fp32", device="cpu")
    assert type(saved.hf) is FAMILIES[name].model_class() and saved.family is FAMILIES[name]
    assert aqa.answer(saved, str(data["train.jsonl"].parent / "tone.wav"), "What is it?", ["Tone", "Noise"],
                      DecodingOptions(max_new_tokens=4)).answer in ("Tone", "Noise")  # fmt: skip

    spied(train.grpo, "AudioGRPOTrainer", resume_spy, monkeypatch)
    resumed = tmp_path / "resumed"
    checkpoint = shutil.copytree(out / "checkpoint-1", resumed / "checkpoint-1")
    assert train.grpo.run(list(map(str, [*args, "--output_dir", resumed, "--resume_from_checkpoint", checkpoint]))) == 0
    assert_restored(resume_spy, weights_of(name, checkpoint), weights_of(name, model_dir))
    assert steps_logged(resumed / "checkpoint-2") == [1, 2]


@pytest.mark.parametrize("name", NEW)
def test_sft_two_steps_then_resume_from_checkpoint_1(name, family_dirs, data, tmp_path, resume_spy, monkeypatch):
    model_dir, out = family_dirs[name], tmp_path / "out"
    args = ["--config", SFT_TINY, "--model_name_or_path", model_dir, "--train_file", data["train.jsonl"]]
    args += ["--save_steps", 1, "--per_device_train_batch_size", 1]
    assert sft.run(list(map(str, [*args, "--output_dir", out]))) == 0
    assert steps_logged(out / "checkpoint-2") == [1, 2]
    assert type(aqa.load_model(str(out), precision="fp32", device="cpu").hf) is FAMILIES[name].model_class()

    spied(sft, "AudioSFTTrainer", resume_spy, monkeypatch)
    resumed = tmp_path / "resumed"
    checkpoint = shutil.copytree(out / "checkpoint-1", resumed / "checkpoint-1")
    assert sft.run(list(map(str, [*args, "--output_dir", resumed, "--resume_from_checkpoint", checkpoint]))) == 0
    assert_restored(resume_spy, weights_of(name, checkpoint), weights_of(name, model_dir))
    assert steps_logged(resumed / "checkpoint-2") == [1, 2]


# --- the per-row audio check ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FAMILIES))
def test_grpo_catches_two_swapped_rows(name, family_dirs, data, tmp_path):
    """A deliberate misalignment in the first micro-batch: the first completion of one question gets the other
    question's audio (a 35 s clip and a 1 s one: for Audio Flamingo 3 two windows against one) and the other way
    round. The row counts still match; the per-row check stops the step (Qwen2-Audio included: its model checks only
    the batch's totals). Built as train.grpo builds it: the reference model is the family's answering model too (an
    Omni thinker, not the whole checkpoint), and the audio placeholder is never sampled."""
    family = FAMILIES[name]
    trainer, _, _ = make_trainer(
        family_dirs[name], data["windows.jsonl"], tmp_path, num_generations=2, per_device_train_batch_size=4,
        max_steps=1, max_completion_length=2,
    )  # fmt: skip
    assert type(trainer.ref_model) is family.model_class()
    policy, reference = trainer.model.state_dict(), trainer.ref_model.state_dict()
    assert policy.keys() == reference.keys() and all(torch.equal(policy[k], reference[k]) for k in policy)
    assert trainer.generation_config.suppress_tokens == [trainer.model.config.audio_token_id]
    assert not hasattr(trainer.model.config, "image_token_id") or trainer.model.config.image_token_id != (
        trainer.model.config.audio_token_id
    )
    generate = trainer._generate_and_score_completions

    def misaligned(inputs):
        output = generate(inputs)
        counts = family.audio_token_counts({key: output[key] for key in family.audio_keys})
        assert counts[0] != counts[3]
        if name == "audio-flamingo-3":
            windows = output["input_features_mask"].any(-1).sum(-1)
            assert sorted({int(windows[0]), int(windows[3])}) == [1, 2]
        for key in family.audio_keys:
            output[key] = output[key][[3, 1, 2, 0]]
        return output

    trainer._generate_and_score_completions = misaligned
    with pytest.raises(RuntimeError, match=r"audio tokens but its audio features make \d+ encoder outputs"):
        trainer.train()


@pytest.mark.parametrize("name", NEW)
def test_sft_catches_two_swapped_rows(name, family_dirs, data):
    model_args = AudioModelConfig(model_name_or_path=str(family_dirs[name]), dtype="float32")
    model, processor = get_model(model_args), get_processor(model_args)
    family = FAMILIES[name]
    examples = get_examples(DataArguments(train_file=str(data["windows.jsonl"])))
    batch = sft.AnswerCollator(processor, family)([sft.AudioQuestions(examples)[i] for i in (0, 1)])
    trainer = sft.AudioSFTTrainer(
        model=model, args=sft.SFTConfig(output_dir="unused", use_cpu=True, report_to="none"),
        compute_loss_func=sft.answer_loss,
    )  # fmt: skip
    assert trainer.compute_loss(model, dict(batch)) > 0  # aligned
    swapped = {**batch, **{key: batch[key][[1, 0]] for key in family.audio_keys}}
    with pytest.raises(RuntimeError, match=r"row 0 holds \d+ audio tokens but its audio features make \d+ encoder"):
        trainer.compute_loss(model, swapped)


# --- two processes -------------------------------------------------------------------------------------------------


def torchrun(entry: str, *args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", entry, *args]
    return subprocess.run(list(map(str, command)), capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("name", NEW)
def test_grpo_on_two_processes(name, family_dirs, data, tmp_path):
    """torchrun, 2 processes with gloo: one step, and an evaluation each process answers half of."""
    out = tmp_path / "out"
    args = ["--config", GRPO_TINY, "--model_name_or_path", family_dirs[name], "--train_file", data["train.jsonl"]]
    args += ["--output_dir", out, "--max_steps", 1, "--save_strategy", "no", "--max_completion_length", 4]
    done = torchrun("train.grpo", *args, "--eval_file", data["eval.json"], "--eval_steps", 1)
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "2 process(es), DistributedType.MULTI_CPU on cpu" in log and "'rewards/accuracy_reward/mean'" in log
    predictions = json.loads((out / "eval" / "step-1.json").read_text())
    assert [row["id"] for row in predictions] == ["e0", "e1"]
    assert type(aqa.load_model(str(out), precision="fp32", device="cpu").hf) is FAMILIES[name].model_class()


def test_sft_on_two_processes(family_dirs, data, tmp_path):
    """torchrun, 2 processes, two steps with activation checkpointing, under which the Trainer's distributed data
    parallel does not look for unused parameters: it stops at the second step if any trained parameter got no
    gradient. Qwen2.5-Omni has both kinds that audio never reaches (its vision encoder, its audio encoder's unused
    begin/end embedding): with them trainable this run stops with "Expected to have finished reduction in the prior
    iteration"; training freezes them. (GRPO's TRL looks for unused parameters itself.)"""
    name = "qwen2.5-omni"
    args = ["--config", SFT_TINY, "--model_name_or_path", family_dirs[name], "--train_file", data["train.jsonl"]]
    args += ["--output_dir", tmp_path / "out", "--per_device_train_batch_size", 1, "--save_strategy", "no"]
    done = torchrun("train.sft", *args, "--activation_checkpointing", "true")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "'train_runtime'" in done.stdout + done.stderr and (tmp_path / "out" / "model.safetensors").is_file()


# --- learning ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_qwen3_omni_learns_a_dense_reward_through_the_audio_path(seed, family_dirs, data, tmp_path):
    """Qwen3-Omni (mixture of experts, its load-balancing loss on): over 12 steps the mean reward rises, for each of
    three seeds; the projector at the end of the audio tower, which sees only the audio, is trained while the rest
    of the frozen encoder does not move."""
    run = dict(num_generations=4, per_device_train_batch_size=4, max_completion_length=16, beta=0.0, max_steps=12)
    run |= dict(learning_rate=2e-2, lr_scheduler_type="constant", seed=seed)
    trainer, guard, _ = make_trainer(
        family_dirs["qwen3-omni"], data["train.jsonl"], tmp_path, reward_funcs=[low_byte_share],
        model_options=dict(freeze_audio_encoder=True), **run,
    )  # fmt: skip
    assert trainer.aux_loss_enabled
    tower = trainer.model.model.audio_tower
    projector, encoder = tower.proj2.weight.detach().clone(), tower.conv2d1.weight.detach().clone()
    trainer.train()
    rewards = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert len(rewards) == 12 and last > first + 0.15, rewards
    assert guard.without_features == 0
    assert not torch.equal(tower.proj2.weight, projector) and torch.equal(tower.conv2d1.weight, encoder)
    assert all("aux_loss" in entry for entry in trainer.state.log_history if "reward" in entry)


# --- the mixture of experts' load-balancing loss, exactly once ----------------------------------------------------


def test_grpo_adds_the_load_balancing_loss_once(family_dirs, data, tmp_path):
    """On policy with beta 0 the policy term of R1-AQA's loss is exactly 0 (advantages sum to 0 within a group), so
    the step's loss is the load-balancing term alone: router_aux_loss_coef x the model's own aux_loss on the batch."""
    model_dir = family_dirs["qwen3-omni"]
    run = dict(num_generations=4, per_device_train_batch_size=4, max_completion_length=6, beta=0.0, max_steps=1)
    trainer, _, _ = make_trainer(
        model_dir, data["train.jsonl"], tmp_path, reward_funcs=[low_byte_share], router_aux_loss_coef=0.5, **run
    )
    seen = {}
    generate, compute_loss = trainer._generate_and_score_completions, trainer._compute_loss
    trainer._generate_and_score_completions = lambda inputs: seen.setdefault("batch", generate(inputs))
    trainer._compute_loss = lambda model, inputs: seen.setdefault("loss", compute_loss(model, inputs))
    trainer.train()
    batch, family = seen["batch"], FAMILIES["qwen3-omni"]
    assert batch["advantages"].abs().sum() > 0
    model = family.model_class().from_pretrained(str(model_dir), dtype=torch.float32)
    with torch.no_grad():
        outputs = model(
            input_ids=torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1),
            attention_mask=torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1),
            output_router_logits=True,
            **family.model_audio({key: batch[key] for key in family.audio_keys}),
        )
    assert outputs.aux_loss.item() > 0.1  # without it the loss would be 0
    assert seen["loss"].item() == pytest.approx(0.5 * outputs.aux_loss.item(), rel=1e-4)


def test_sft_adds_the_load_balancing_loss_once(family_dirs, data, tmp_path):
    """SFT's loss on a micro-batch is the answer tokens' cross-entropy (over the accumulated batch's answer tokens)
    plus router_aux_loss_coef x the model's aux_loss, divided by the accumulation steps as GRPO divides it."""
    model_dir = family_dirs["qwen3-omni"]
    model_args = AudioModelConfig(model_name_or_path=str(model_dir), dtype="float32")
    model, processor = get_model(model_args), get_processor(model_args)
    family = FAMILIES["qwen3-omni"]
    examples = get_examples(DataArguments(train_file=str(data["train.jsonl"])))
    run = dict(max_steps=1, save_strategy="no", per_device_train_batch_size=1, gradient_accumulation_steps=2)
    args = sft.SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", router_aux_loss_coef=0.5, **run)
    trainer = sft.AudioSFTTrainer(
        model=model, args=args, train_dataset=sft.AudioQuestions(examples),
        data_collator=sft.AnswerCollator(processor, family), processing_class=processor,
        compute_loss_func=sft.answer_loss,
    )  # fmt: skip
    calls = []
    compute_loss = trainer.compute_loss

    def recorded(model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = compute_loss(model, dict(inputs), return_outputs, num_items_in_batch)
        calls.append((dict(inputs), num_items_in_batch, loss.detach().clone()))
        return loss

    trainer.compute_loss = recorded
    reference = family.model_class().from_pretrained(str(model_dir), dtype=torch.float32)
    trainer.train()
    inputs, items, loss = calls[0]  # the first micro-batch: the weights are still the checkpoint's
    with torch.no_grad():
        outputs = reference(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], output_router_logits=True,
            **family.model_audio({key: inputs[key] for key in family.audio_keys}),
        )  # fmt: skip
    labels = inputs["labels"][:, 1:]
    keep = labels != sft.IGNORE_INDEX
    answer = F.cross_entropy(outputs.logits[:, :-1][keep], labels[keep], reduction="sum") / items
    assert loss.item() == pytest.approx(answer.item() + 0.5 * outputs.aux_loss.item() / 2, rel=1e-4)


# --- what trains: frozen parts, LoRA targets -----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FAMILIES))
def test_what_trains(name, family_dirs):
    """Full fine-tune: everything but what audio never reaches, and every trained parameter gets a gradient (none
    waits in vain under distributed data parallel). --freeze_audio_encoder: the encoder without its projector. LoRA:
    only the language model's layers (Qwen3-Omni: attention and, through target_parameters, the fused experts; its
    router never), nothing in the encoders."""
    family = FAMILIES[name]
    model_args = AudioModelConfig(model_name_or_path=str(family_dirs[name]), dtype="float32")
    model = get_model(model_args)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if under(n, family.unused_by_audio)}
    question = {"example": Example("0", "clip", "What?", ("A", "B"), "A"), "samples": torch.rand(16000).numpy()}
    inputs = sft.AnswerCollator(get_processor(model_args), family)([question])
    outputs = model(**{k: v for k, v in inputs.items() if k not in family.audio_keys}, **family.model_audio(
        {k: inputs[k] for k in family.audio_keys}))  # fmt: skip
    outputs.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)

    encoder = get_model(AudioModelConfig(model_name_or_path=str(family_dirs[name]), freeze_audio_encoder=True))
    trained = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert not any(under(n, ("model.audio_tower",)) and not under(n, family.audio_projector) for n in trained)
    assert any(under(n, family.audio_projector) for n in trained) and any(".language_model." in n for n in trained)

    lora_args = AudioModelConfig(model_name_or_path=str(family_dirs[name]), use_peft=True, lora_dropout=0.0)
    lora = get_peft_model(model, get_lora_config(lora_args, model))
    adapted = {n.split(".lora_")[0].removeprefix("base_model.model.") for n, p in lora.named_parameters()
               if p.requires_grad}  # fmt: skip
    assert adapted and all(n.startswith("model.language_model.layers.") for n in adapted)
    assert any(".self_attn." in n for n in adapted) and not any(n.endswith(".mlp.gate") for n in adapted)
    assert any(".mlp.experts" in n for n in adapted) == (name == "qwen3-omni")


def test_qwen3_omni_lora_on_the_experts_resumes_and_merges(family_dirs, data, tmp_path, resume_spy):
    """LoRA on attention and experts (PEFT's target_parameters): two steps, resumed from checkpoint-1 with the
    adapter restored tensor for tensor, and the merged model `aqa` loads."""
    model_dir = family_dirs["qwen3-omni"]
    lora = dict(use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0)
    steps = dict(reward_funcs=[low_byte_share], model_options=lora, save_strategy="steps", save_steps=1)
    trainer, _, model_args = make_trainer(model_dir, data["train.jsonl"], tmp_path, learning_rate=1e-2, **steps)
    trainer.train()
    checkpoint = tmp_path / "checkpoint-1"
    saved = load_file(str(checkpoint / "adapter_model.safetensors"))
    assert any(".mlp.experts." in key for key in saved)
    resumed, _, _ = make_trainer(model_dir, data["train.jsonl"], tmp_path / "resumed", learning_rate=1e-2, **steps)
    resumed.add_callback(resume_spy)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resume_spy.loaded.keys() == saved.keys()
    assert all(torch.equal(resume_spy.loaded[key], saved[key]) for key in saved)
    assert any(key.endswith("lora_B.weight") and bool(tensor.any()) for key, tensor in saved.items())
    assert isinstance(trainer.model, PeftModel)
    save_final(trainer, model_args, trainer.args)
    merged = aqa.load_model(str(tmp_path), precision="fp32", device="cpu")
    assert type(merged.hf) is FAMILIES["qwen3-omni"].model_class()


@pytest.mark.parametrize("name", ["qwen2.5-omni", "audio-flamingo-3"])
def test_qlora_step_as_the_one_gpu_recipe_takes_it(name, family_dirs, data, tmp_path):
    """The one-GPU recipes' QLoRA on the tiny checkpoint (bitsandbytes NF4 runs on the CPU too): the language model's
    linear layers in 4-bit, the encoders not, and two steps train the adapters."""
    qlora = dict(use_peft=True, load_in_4bit=True, lora_r=4, lora_alpha=8)
    trainer, guard, _ = make_trainer(
        family_dirs[name], data["train.jsonl"], tmp_path, reward_funcs=[low_byte_share], model_options=qlora,
        max_steps=2, max_completion_length=16, learning_rate=1e-2,
    )  # fmt: skip
    base = trainer.model.get_base_model()
    kinds = lambda module: {type(m).__name__ for m in module.modules()}  # noqa: E731
    assert "Linear4bit" in kinds(base.model.language_model) and "Linear4bit" not in kinds(base.model.audio_tower)
    adapters = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    trained = dict(trainer.model.named_parameters())
    assert any(not torch.equal(trained[n], before) for n, before in adapters.items())
    assert guard.without_features == 0


BAD = [
    # (family, options, the start of the one-line error): refused before anything loads
    ("qwen3-omni", ["--load_in_4bit", "true"], "Qwen3-Omni cannot be loaded in 4bit: bitsandbytes quantizes only"),
    ("qwen3-omni", ["--use_peft", "true", "--lora_dropout", "0.05"], "--lora_dropout must be 0 for LoRA on Qwen3"),
    (
        "audio-flamingo-3",
        ["--use_peft", "true", "--lora_target_modules", r"model\.lm\.\d+"],
        r"--lora_target_modules model\.lm\.\d+ matches no module of this Audio Flamingo 3 model",
    ),  # fmt: skip
]


@pytest.mark.parametrize("name, options, message", BAD, ids=["4bit", "lora_dropout", "lora_targets"])
@pytest.mark.parametrize("entry", ["grpo", "sft"])
def test_settings_a_family_cannot_take_are_refused_before_loading(
    entry, name, options, message, family_dirs, data, tmp_path, capsys, monkeypatch
):
    module = train.grpo if entry == "grpo" else sft

    def no_model(*_, **__):
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr(module, "get_model", no_model)
    recipe = GRPO_TINY if entry == "grpo" else SFT_TINY
    args = ["--config", recipe, "--model_name_or_path", family_dirs[name], "--train_file", data["train.jsonl"]]
    assert module.run(list(map(str, [*args, "--output_dir", tmp_path, *options]))) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"error: {message}") and len(lines) == 1


# --- recipes and their memory --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def memory() -> dict[str, train_memory.Estimate]:
    estimates = [train_memory.estimate(*recipe) for recipe in train_memory.RECIPES]
    return {estimate.recipe: estimate for estimate in estimates}


@pytest.mark.parametrize("recipe", FAMILY_RECIPES, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_family_recipes_are_r1_aqas_and_state_their_computed_memory(recipe, memory):
    """Each family's recipes resolve to R1-AQA's loss, sampling and rewards; the full one to R1-AQA's full fine-tune
    (lr 1e-6, 8 GPUs x 1 prompt x 8 generations, accumulation 2), the one-GPU one to LoRA (on 4-bit weights where
    the family allows it); each names a published checkpoint of its folder's family and states the GPU memory that
    bench/train_memory.py computes for it."""
    data, training, model = parse_config(train.grpo.CONFIG_CLASSES, ["--config", str(recipe), "--use_cpu", "true"])
    family = train_memory.recipe_family(model.model_name_or_path)
    assert family.name == recipe.parent.name and data.video_to_audio
    assert (training.use_bias_correction_kl, training.loss_type, training.scale_rewards) == (False, "grpo", "group")
    assert (training.top_k, training.top_p, training.temperature, training.beta) == (50, 1.0, 1.0, 0.04)
    assert training.reward_funcs == ["accuracy_reward", "format_reward"] and training.max_completion_length == 256
    assert (training.num_generations, training.per_device_train_batch_size, model.dtype) == (8, 8, "bfloat16")
    if recipe.stem == "grpo_full":
        assert not model.use_peft and (training.learning_rate, training.gradient_accumulation_steps) == (1e-6, 2)
    else:
        assert model.use_peft and model.load_in_4bit == (family.name != "qwen3-omni")
        config = family.build_config(family.build_tokenizer(), "full")
        check_quantizable(config, "4bit" if model.load_in_4bit else "bf16")  # the published shapes allow it
        assert not (model.lora_dropout and family.lora_target_parameters)
    estimate = memory[f"{recipe.parent.name}/{recipe.name}"]
    text = recipe.read_text()
    assert f"GPU memory (bench/train_memory.py): {estimate.peak} GiB peak" in text
    if estimate.host_memory:
        assert f"{estimate.host_memory} GiB of host memory" in text


def test_the_docs_table_is_what_bench_train_memory_prints(memory):
    text = (ROOT / "docs" / "training.md").read_text()
    table = text.split("<!-- train_memory -->\n")[1].split("<!-- /train_memory -->")[0]
    estimates = [
        memory[" ".join([recipe[0].removeprefix("train/recipes/"), *recipe[1:]])] for recipe in train_memory.RECIPES
    ]
    assert table.strip() == train_memory.markdown(estimates)


def test_memory_of_qwen2_audios_qlora_recipe_is_near_the_measured_peak(memory):
    """The one recipe measured on a GPU (11.4 GiB peak on an H100, docs/benchmarks.md) against the arithmetic."""
    assert memory["grpo_qlora_24gb.yaml"].peak == pytest.approx(11.4, abs=0.6)


def test_bench_grpo_step_runs_a_family_at_tiny_size():
    """bench/grpo_step.py --family, as bench/run_gpu.sh runs it at full size on a GPU for each family, here at tiny
    size (the family's tiny checkpoint through the tiny recipe: what differs at full size is only the recipe file, and
    each family's parses in test_family_recipes_are_r1_aqas_and_state_their_computed_memory)."""
    name = "audio-flamingo-3"
    args = argparse.Namespace(random_weights="tiny", family=name, steps=1, max_completion_length=2)
    report = grpo_step.measure(args)
    assert report["recipe"]["family"] == name and len(report["grpo_steps"]) == 1
    assert report["grpo_seconds_per_step"] > 0 and report["grpo_peak_memory_gib"] > 0
    assert {family: grpo_step.recipe_of("full", FAMILIES[family]) for family in NEW} == {
        "qwen2.5-omni": "train/recipes/qwen2.5-omni/grpo_qlora.yaml",
        "qwen3-omni": "train/recipes/qwen3-omni/grpo_lora.yaml",
        "audio-flamingo-3": "train/recipes/audio-flamingo-3/grpo_qlora.yaml",
    }
    assert train.grpo.AudioGRPOTrainer is AudioGRPOTrainer  # the bench's timed trainer is gone again
