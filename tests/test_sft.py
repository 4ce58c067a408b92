"""train.sft on the tiny checkpoint: answer-only labels and loss, 2 training steps with an evaluation, LoRA, `aqa ask`
on the result, resume that restores the trained weights, settings refused before the model loads, each row with its
own clip's features."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT
from safetensors.torch import load_file
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


def tiny_args(model_dir, train_file, output_dir, *overrides) -> list[str]:
    args = ["--config", TINY_RECIPE, "--model_name_or_path", model_dir, "--train_file", train_file]
    return list(map(str, [*args, "--output_dir", output_dir, *overrides]))


@pytest.fixture(scope="module")
def full_run(avqa_jsonl, tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny recipe from the command line: 2 steps, a checkpoint and an evaluation (on the training file's
    questions, AVQA rows) at step 2."""
    out = tmp_path_factory.mktemp("sft") / "full"
    command = [
        sys.executable,
        "-m",
        "train.sft",
        *tiny_args(tiny_model_dir, avqa_jsonl, out, "--eval_file", avqa_jsonl),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def lora_run(avqa_jsonl, tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny recipe with LoRA (rank 8), in process: 2 steps, a checkpoint at step 2, merged at the end."""
    out = tmp_path_factory.mktemp("sft") / "lora"
    args = tiny_args(tiny_model_dir, avqa_jsonl, out, "--use_peft", "true", "--lora_r", "8", "--lora_alpha", "16")
    assert sft.run(args) == 0
    return out


def test_two_steps_save_a_model_that_aqa_answers_with(full_run, tiny_model_dir, avqa_jsonl, aqa_cli):
    out = full_run
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


def test_evaluation_is_kept_in_the_checkpoint_and_equals_aqa_mmau_score(full_run, aqa_cli):
    """--eval_file alone evaluates at every checkpoint; AVQA rows are scored like MMAU's (question_type as the
    sub-category)."""
    state = json.loads((full_run / "checkpoint-2" / "trainer_state.json").read_text())
    [evaluation] = [entry for entry in state["log_history"] if "eval_accuracy" in entry]
    scored = json.loads(aqa_cli("mmau", "score", full_run / "eval" / "step-2.json", "--json", check=True).stdout)
    assert evaluation["step"] == 2 and evaluation["eval_questions"] == scored["n"] == 4
    assert (evaluation["eval_accuracy"], evaluation["eval_strict_accuracy"]) == (
        scored["total"],
        scored["strict"]["total"],
    )
    assert set(scored["subcategories"]) == {"Which"}


def test_lora_trains_only_the_language_model_and_saves_it_merged(lora_run, tiny_model_dir):
    out = lora_run
    before, after = weights(tiny_model_dir), weights(out)
    assert before.keys() == after.keys()  # merged: a plain Qwen2-Audio checkpoint, no adapter weights left
    assert (out / "adapter" / "adapter_config.json").is_file()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith("model.language_model.layers.") for name in changed)
    assert all(name.endswith("_proj.weight") for name in changed)  # the decoder's linear layers, nothing else
    assert any(".mlp." in name for name in changed) and any(".self_attn." in name for name in changed)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_resume_restores_the_trained_weights(
    lora, full_run, lora_run, avqa_jsonl, tiny_model_dir, tmp_path, resume_spy, monkeypatch
):
    """Resumed from checkpoint-2 to step 3, nothing else changed: the weights at the start of step 3 are
    checkpoint-2's, tensor for tensor, and no key is reported missing or unexpected."""
    out = tmp_path / "out"
    checkpoint = shutil.copytree((lora_run if lora else full_run) / "checkpoint-2", out / "checkpoint-2")

    class Spied(sft.AudioSFTTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(resume_spy)

    monkeypatch.setattr(sft, "AudioSFTTrainer", Spied)
    lora_args = ["--use_peft", "true", "--lora_r", "8", "--lora_alpha", "16", "--merge_adapter", "false"]
    resume = [*(lora_args if lora else []), "--resume_from_checkpoint", checkpoint, "--max_steps", "3"]
    assert sft.run(tiny_args(tiny_model_dir, avqa_jsonl, out, *resume)) == 0

    if lora:
        saved = load_file(str(checkpoint / "adapter_model.safetensors"))
        assert any(name.endswith("lora_B.weight") and bool(tensor.any()) for name, tensor in saved.items())
    else:
        saved = weights(checkpoint)
        assert not torch.equal(saved["lm_head.weight"], weights(tiny_model_dir)["lm_head.weight"])
    assert resume_spy.loaded.keys() == saved.keys()
    assert all(torch.equal(resume_spy.loaded[name], saved[name]) for name in saved)
    assert not [message for message in resume_spy.warnings if "keys" in message]
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [1, 2, 3]


def test_a_lora_checkpoint_is_refused_without_lora_in_one_line(lora_run, avqa_jsonl, tiny_model_dir, tmp_path, capsys):
    checkpoint = lora_run / "checkpoint-2"
    args = tiny_args(tiny_model_dir, avqa_jsonl, tmp_path / "out", "--resume_from_checkpoint", checkpoint)
    assert sft.run(args) == 2
    error = capsys.readouterr().err.splitlines()[-1]  # the last line, after the progress bars
    assert (
        error == f"error: {checkpoint} holds a LoRA adapter: resume it with --use_peft true and the same LoRA options"
    )


def test_features_swapped_between_two_rows_are_caught(batch, tiny_model):
    items, inputs = batch
    trainer = sft.AudioSFTTrainer(
        model=tiny_model.hf,
        args=sft.SFTConfig(output_dir="unused", use_cpu=True, report_to="none"),
        compute_loss_func=sft.answer_loss,
    )
    swapped = {**inputs, **{key: inputs[key][[2, 1, 0]] for key in ("input_features", "feature_attention_mask")}}
    with pytest.raises(
        RuntimeError, match=r"row 0 holds \d+ <\|AUDIO\|> tokens but its audio features make 50 encoder"
    ):
        trainer.compute_loss(tiny_model.hf, swapped)


@pytest.mark.parametrize(
    "override, message",
    [
        (["--train_file", "no/such.jsonl"], "no/such.jsonl: no such training file"),
        (["--model_name_or_path", "./no/such/model"], "./no/such/model: no such model directory"),
        (["--remove_unused_columns", "true"], "--remove_unused_columns is not supported here"),
        (["--resume_from_checkpoint", "true"], "--resume_from_checkpoint true: OUT holds no checkpoint-N folder"),
        (["--eval_strategy", "steps"], "evaluation needs questions: give --eval_file"),
        (["--use_vllm", "true"], "not used by the HfArgumentParser"),  # GRPO's option: unknown to SFT
    ],
)
def test_bad_input_is_one_line_error_before_the_model_loads(
    avqa_jsonl, tiny_model_dir, tmp_path, capsys, monkeypatch, override, message
):
    def no_model(*_, **__):
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr(sft, "get_model", no_model)
    out = tmp_path / "o"
    assert sft.run(tiny_args(tiny_model_dir, avqa_jsonl, out, *override)) == 2
    error = capsys.readouterr().err
    assert message.replace("OUT", str(out)) in error and error.count("\n") == 1


def test_a_run_that_would_make_no_step_stops_before_the_model_loads(avqa_jsonl, tiny_model_dir, tmp_path, capsys):
    """With --dataloader_drop_last, fewer rows than one batch would train 0 steps and still save a model."""

    def no_model(*_, **__):
        raise AssertionError("the model was loaded before the row count was checked")

    override = ["--dataloader_drop_last", "true", "--per_device_train_batch_size", "64"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sft, "get_model", no_model)
        assert sft.run(tiny_args(tiny_model_dir, avqa_jsonl, tmp_path / "o", *override)) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and "row(s) make no optimizer step" in error
    assert "1 process(es) x per_device_train_batch_size 64" in error


@pytest.mark.parametrize("recipe", sorted((ROOT / "train" / "recipes").glob("sft_*.yaml")), ids=lambda p: p.stem)
def test_recipes_parse_with_answer_only_data_settings(recipe):
    # --use_cpu: the GPU recipes ask for bf16, which TrainingArguments refuses on a machine without a GPU otherwise.
    data_args, training_args, model_args = parse_config(sft.CONFIG_CLASSES, ["--config", str(recipe), "--use_cpu", "1"])
    assert data_args.video_to_audio and not data_args.think  # R1-AQA's training prompt, answer-only
    assert training_args.remove_unused_columns is False  # the collator needs the examples as they are
    assert model_args.model_name_or_path and training_args.output_dir.startswith("runs/")
