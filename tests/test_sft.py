"""train.sft on the tiny checkpoint: answer-only labels and loss, 2 training steps, LoRA, `aqa ask` on the result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT
from test_prepare_avqa import make_avqa  # the same small AVQA, made with FFmpeg

from aqa.inputs import Prepared, build_inputs
from aqa.loading import load_model
from aqa.options import Question
from train import prepare_avqa, sft
from train.config import parse_config
from train.data import DataOptions, load_examples

TINY_RECIPE = ROOT / "train" / "recipes" / "sft_tiny_cpu.yaml"


@pytest.fixture(scope="module")
def avqa_jsonl(tmp_path_factory) -> Path:
    """The prepare_avqa JSONL of the small AVQA: 4 questions on 3 clips."""
    folder = tmp_path_factory.mktemp("avqa")
    qa, media = make_avqa(folder)
    out = folder / "data" / "avqa_train.jsonl"
    assert prepare_avqa.main(["--qa", str(qa), "--media", str(media), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def batch(avqa_jsonl, tiny_model):
    examples, _ = load_examples(avqa_jsonl, DataOptions(video_to_audio=True))
    items = [sft.AudioQuestions(examples)[i] for i in (1, 2, 3)]  # clips of 1, 1.5 and 2 s: different lengths
    return items, sft.AnswerCollator(tiny_model.processor)(items)


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """Parameters by their in-memory names (files keep the older `language_model.model.` layout)."""
    return load_model(str(checkpoint), precision="fp32", device="cpu").hf.state_dict()


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    return labels != sft.IGNORE_INDEX


def test_labels_are_the_answer_and_the_prompt_is_the_inference_prompt(batch, tiny_model):
    items, inputs = batch
    tokenizer = tiny_model.tokenizer
    for row, item in enumerate(items):
        example, keep = item["example"], answer_positions(inputs["labels"][row])
        length = int(inputs["attention_mask"][row].sum())
        # Labels: exactly the target tokens, which are the last tokens of the row; -100 on prompt and padding.
        assert tokenizer.decode(inputs["labels"][row][keep]) == f"<answer>{example.answer}</answer><|im_end|>"
        assert keep.nonzero().flatten().tolist() == list(range(length - int(keep.sum()), length))
        assert (inputs["input_ids"][row][keep] == inputs["labels"][row][keep]).all()
        # The prompt: token for token what `aqa ask` feeds the model (same builder, template and audio loader).
        question = Question(example.audio_path, example.question, example.options)
        expected = build_inputs(tiny_model, [Prepared(question, item["samples"], 0.0)], think=False)
        prompt = inputs["input_ids"][row][: length - int(keep.sum())]
        assert prompt.tolist() == expected["input_ids"][0].tolist()
        assert torch.equal(inputs["input_features"][row], expected["input_features"][0])
    assert "in the audio?" in items[0]["example"].question  # R1-AQA's training rewrite of "video"


def test_loss_counts_only_the_answer_tokens(batch, tiny_model):
    _, inputs = batch
    labels = inputs["labels"]
    model_inputs = {key: value for key, value in inputs.items() if key != "labels"}
    outputs = tiny_model.hf(**model_inputs)
    outputs.logits.retain_grad()
    loss = sft.answer_loss(outputs, labels)

    # By hand: position t predicts token t + 1, over the answer tokens only.
    rows, cols = answer_positions(labels).nonzero(as_tuple=True)
    by_hand = F.cross_entropy(outputs.logits[rows, cols - 1], labels[rows, cols])
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    # Qwen2-Audio's own loss (a mean over labelled tokens) agrees on a single micro-batch.
    assert loss.item() == pytest.approx(tiny_model.hf(**inputs).loss.item(), rel=1e-5)
    # Gradient accumulation: the sum is divided by the answer tokens of the whole accumulated batch.
    assert sft.answer_loss(outputs, labels, 2 * len(rows)).item() == pytest.approx(loss.item() / 2, rel=1e-5)

    # The prompt (system turn, audio, question) and the padding get no gradient at all; every answer token does.
    loss.backward()
    touched = outputs.logits.grad.abs().sum(-1) > 0
    predicts_answer = torch.zeros_like(touched)
    predicts_answer[rows, cols - 1] = True
    assert torch.equal(touched, predicts_answer)
    tiny_model.hf.zero_grad(set_to_none=True)


def test_two_steps_save_a_model_that_aqa_answers_with(avqa_jsonl, tiny_model_dir, tmp_path, aqa_cli):
    out = tmp_path / "sft"
    command = [sys.executable, "-m", "train.sft", "--config", str(TINY_RECIPE), "--model_name_or_path"]
    command += [str(tiny_model_dir), "--train_file", str(avqa_jsonl), "--output_dir", str(out), "--max_steps", "2"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]

    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and all(log["loss"] > 0 for log in state["log_history"] if "loss" in log)
    before, after = weights(tiny_model_dir), weights(out)
    for name in ("lm_head.weight", "model.audio_tower.layers.0.fc1.weight"):  # full fine-tune: the encoder too
        assert not torch.equal(before[name], after[name]), name

    clip = next(avqa_jsonl.parent.glob("avqa_audio/*.wav"))
    options = ["Dog barking", "Car engine", "Piano", "Rain"]
    answered = aqa_cli("ask", "--model", out, "--audio", clip, "--question", "What is it?", "--options", *options,
                       "--max-new-tokens", "16", "--json", check=True)  # fmt: skip
    result = json.loads(answered.stdout)
    assert result["answer"] in options and sum(result["probabilities"].values()) == pytest.approx(1.0)


def test_lora_trains_only_the_language_model_and_saves_it_merged(avqa_jsonl, tiny_model_dir, tmp_path):
    out = tmp_path / "lora"
    args = ["--config", str(TINY_RECIPE), "--model_name_or_path", str(tiny_model_dir), "--train_file"]
    args += [str(avqa_jsonl), "--output_dir", str(out), "--use_peft", "true", "--lora_r", "8", "--lora_alpha", "16"]
    assert sft.run(args + ["--save_strategy", "no"]) == 0

    before, after = weights(tiny_model_dir), weights(out)
    assert before.keys() == after.keys()  # merged: a plain Qwen2-Audio checkpoint, no adapter weights left
    assert (out / "adapter" / "adapter_config.json").is_file()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith("model.language_model.layers.") for name in changed)
    assert all(name.endswith("_proj.weight") for name in changed)  # the decoder's linear layers, nothing else
    assert any(".mlp." in name for name in changed) and any(".self_attn." in name for name in changed)


@pytest.mark.parametrize(
    "override, message",
    [
        (["--train_file", "no/such.jsonl"], "no/such.jsonl: no such training file"),
        (["--model_name_or_path", "./no/such/model"], "./no/such/model: no such model directory"),
    ],
)
def test_bad_input_is_one_line_error(avqa_jsonl, tiny_model_dir, tmp_path, capsys, override, message):
    args = ["--config", str(TINY_RECIPE), "--model_name_or_path", str(tiny_model_dir), "--train_file", str(avqa_jsonl)]
    assert sft.run(args + ["--output_dir", str(tmp_path / "o"), *override]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


@pytest.mark.parametrize("recipe", sorted((ROOT / "train" / "recipes").glob("sft_*.yaml")), ids=lambda p: p.stem)
def test_recipes_parse_with_answer_only_data_settings(recipe):
    # --use_cpu: the GPU recipes ask for bf16, which TrainingArguments refuses on a machine without a GPU otherwise.
    data_args, training_args, model_args = parse_config(sft.CONFIG_CLASSES, ["--config", str(recipe), "--use_cpu", "1"])
    assert data_args.video_to_audio and not data_args.think  # R1-AQA's training prompt, answer-only
    assert training_args.remove_unused_columns is False  # the collator needs the examples as they are
    assert model_args.model_name_or_path and training_args.output_dir.startswith("runs/")
