"""Evaluation protocols on the tiny model: `r1-aqa` is R1-AQA's test script exactly (first channel, the checkpoint's
own sampling config, 256 new tokens), seeded runs repeat, `--runs` reports the spread, `--shuffle-choices` the
effect of the options' order. Records and clips are made here; no MMAU file is needed."""

from __future__ import annotations

import json
import shutil
import statistics

import numpy as np
import pytest
import soundfile as sf
import torch
from test_mmau import made_up_records, synthesise

import aqa
from aqa.answering import SEEDING, batch_seed
from aqa.audio import load_audio
from aqa.cli.main import main
from aqa.eval.protocols import aqa_prediction
from aqa.eval.report import interval_bars
from aqa.eval.score import official_match, spread, t_95
from aqa.options import DecodingOptions, Question
from aqa.parsing import extract_r1_aqa_answer
from aqa.prompt import build_messages


def write_data(tmp_path, records) -> list[str]:
    data = tmp_path / "mmau.json"
    data.write_text(json.dumps(records))
    return ["--data", str(data), "--audio-dir", str(tmp_path / "MMAU")]


def run(tmp_path, model_dir, output: str, *extra) -> dict | None:
    args = ["mmau", "run", "--model", str(model_dir), "--device", "cpu", "--output", str(tmp_path / output)]
    assert main([*args, *write_data(tmp_path, RECORDS), *extra]) == 0
    path = tmp_path / output
    return json.loads(path.read_text()) if path.exists() else None


RECORDS = made_up_records(2)


@pytest.fixture
def stereo_records(tmp_path):
    """The made-up records' audio as 16 kHz stereo clips whose channels differ: a tone left, noise right."""
    rng = np.random.default_rng(0)
    for number, record in enumerate(RECORDS):
        path = tmp_path / "MMAU" / record["audio_id"]
        path.parent.mkdir(parents=True, exist_ok=True)
        tone = 0.4 * np.sin(2 * np.pi * (300 + 100 * number) * np.arange(24000) / 16000)
        sf.write(path, np.stack([tone, 0.3 * rng.standard_normal(tone.size)], 1).astype(np.float32), 16000)
    return RECORDS


# --- extraction -------------------------------------------------------------------------------------------------

EXTRACTIONS = [
    # (raw output, R1-AQA's script, aqa's, reason)
    ("<answer>Man</answer>", "Man", "Man", "the tag's text"),
    ("<answer> Man </answer> more", "Man", "Man", "stripped; text after the tag ignored"),
    ("  Man\n", "Man", "Man", "no tag: the whole output, stripped"),
    ("<answer>\nMan\n</answer>", "<answer>\nMan\n</answer>", "Man", "R1-AQA's regex does not cross lines"),
    ("<answer>a</answer><answer>b</answer>", "a", "a", "the first tag"),
    ("<answer>Man", "<answer>Man", "<answer>Man", "an unclosed tag is no tag"),
]


@pytest.mark.parametrize("raw, original, ours, reason", EXTRACTIONS, ids=[case[3] for case in EXTRACTIONS])
def test_prediction_extraction(raw, original, ours, reason):
    assert (extract_r1_aqa_answer(raw), aqa_prediction(raw)) == (original, ours), reason


# --- the r1-aqa protocol ----------------------------------------------------------------------------------------


def test_r1_aqa_protocol_is_the_model_cards_generate_on_the_first_channel(tiny_model, tiny_model_dir, tmp_path):
    synthesise(tmp_path / "MMAU", RECORDS)  # 16 kHz mono (and 22 kHz) clips
    seeded = ["--protocol", "r1-aqa", "--seed", "0", "--batch-size", "1"]
    first = run(tmp_path, tiny_model_dir, "a/preds.json", *seeded)
    again = run(tmp_path, tiny_model_dir, "b/preds.json", *seeded)
    assert [p["raw_output"] for p in first] == [p["raw_output"] for p in again], "same seed, same text"
    manifest = json.loads((tmp_path / "a" / "preds.manifest.json").read_text())
    assert manifest["settings"]["protocol"] == "r1-aqa" and manifest["settings"]["seed"] == 0
    assert manifest["settings"]["decoding"]["sample"] and manifest["settings"]["decoding"]["max_new_tokens"] == 256

    # The model card's recipe, `generate(**inputs, max_new_tokens=256)` and nothing else, under the batch's seed.
    record, prediction = RECORDS[0], first[0]
    path = tmp_path / "MMAU" / record["audio_id"]
    # seeded by the item's id and its clip as the record names it (relative to --audio-dir), never its full path
    key = f"{record['id']}\t{record['audio_id']}"
    question = Question(path, record["question"], tuple(record["choices"]), allow_duplicate_options=True, key=key)
    text = tiny_model.processor.apply_chat_template(
        build_messages(record["question"], record["choices"], audio_url=str(path)), add_generation_prompt=True,
        tokenize=False,
    )  # fmt: skip
    inputs = tiny_model.processor(text=text, audio=[load_audio(path)], sampling_rate=16000, return_tensors="pt")
    torch.manual_seed(batch_seed(0, [question]))
    ids = tiny_model.hf.generate(**inputs, max_new_tokens=256)
    expected = tiny_model.processor.batch_decode(
        ids[:, inputs.input_ids.shape[1] :], skip_special_tokens=True, clean_up_tokenization_spaces=False
    )[0]
    assert prediction["raw_output"] == expected and len(expected) > 0
    assert prediction["model_prediction"] == prediction["model_output"] == extract_r1_aqa_answer(expected)


def test_r1_aqa_protocol_hears_only_the_first_channel(tiny_model, tiny_model_dir, tmp_path, stereo_records):
    predictions = run(tmp_path, tiny_model_dir, "preds.json", "--protocol", "r1-aqa", "--max-new-tokens", "4")
    greedy = run(tmp_path, tiny_model_dir, "greedy.json")
    for record, prediction, mixed in zip(stereo_records, predictions, greedy):
        path = tmp_path / "MMAU" / record["audio_id"]
        only_scores = DecodingOptions(generate=False)
        for channel, expected in (("first", prediction), ("mix", mixed)):
            heard = aqa.answer(
                tiny_model, load_audio(path, channel), record["question"], record["choices"], only_scores
            )
            for option, probability in heard.probabilities.items():
                assert expected["probabilities"][option] == pytest.approx(probability, abs=1e-4), channel
        assert prediction["probabilities"] != pytest.approx(mixed["probabilities"], abs=1e-4)


def test_r1_aqa_protocol_fixes_the_decoding(tiny_model_dir, tmp_path, capsys):
    synthesise(tmp_path / "MMAU", RECORDS)
    args = ["mmau", "run", "--model", str(tiny_model_dir), "--output", str(tmp_path / "p.json"), "--think"]
    assert main([*args, *write_data(tmp_path, RECORDS), "--protocol", "r1-aqa"]) == 2
    assert "--protocol r1-aqa fixes the decoding" in capsys.readouterr().err


# --- repeated runs ----------------------------------------------------------------------------------------------

SPREADS = [
    # (values, mean, std, interval, reason)
    ([60.0, 62.0, 64.0], 62.0, 2.0, (57.03, 66.97), "t(2) = 4.303: 62 ± 4.303 * 2 / sqrt(3)"),
    ([50.0, 50.0], 50.0, 0.0, (50.0, 50.0), "no spread, no interval"),
    ([70.0], 70.0, None, (None, None), "one run: no standard deviation"),
]


@pytest.mark.parametrize("values, mean, std, interval, reason", SPREADS, ids=[case[4] for case in SPREADS])
def test_spread(values, mean, std, interval, reason):
    result = spread(values)
    assert (result.mean, result.std, (result.low, result.high)) == (mean, std, interval), reason


def test_t_quantiles():
    assert (t_95(1), t_95(2), t_95(11), t_95(1000)) == (12.706, 4.303, 2.228, 1.96)


def test_runs_report_each_run_the_mean_std_and_interval(tiny_model_dir, tmp_path, capsys):
    synthesise(tmp_path / "MMAU", RECORDS)
    output = tmp_path / "runs" / "preds.json"
    args = ["mmau", "run", "--model", str(tiny_model_dir), "--device", "cpu", "--output", str(output), "--runs", "3"]
    assert main([*args, *write_data(tmp_path, RECORDS), "--seed", "5", "--sample", "--max-new-tokens", "4"]) == 0
    files = [output.with_name(f"preds.run{n}.json") for n in (1, 2, 3)]
    assert all(path.is_file() for path in files) and not output.exists()
    seeds = [json.loads(p.with_suffix(".manifest.json").read_text())["settings"]["seed"] for p in files]
    assert seeds == [5, 6, 7]
    capsys.readouterr()

    assert main(["mmau", "score", str(output), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    totals = []
    for path in files:
        records = json.loads(path.read_text())
        totals.append(100 * sum(official_match(r["answer"], r["model_output"], r["choices"]) for r in records) / 2)
    assert [run["total"] for run in result["runs"]] == totals and result["seeds"] == [5, 6, 7]
    assert result["mean"]["total"] == round(statistics.mean(totals), 2)
    assert result["std"]["total"] == round(statistics.stdev(totals), 2)
    half = 4.303 * statistics.stdev(totals) / 3**0.5
    assert result["ci95"]["total"] == [
        round(statistics.mean(totals) - half, 2),
        round(statistics.mean(totals) + half, 2),
    ]
    assert set(result["mean"]) == {"sound", "music", "speech", "total"} - ({"speech"} if len(RECORDS) < 3 else set())

    chart = tmp_path / "report.png"
    assert main(["mmau", "report", str(output), "--label", "tiny", "--chart", str(chart)]) == 0
    table = capsys.readouterr().out
    assert "| tiny | qwen2-audio, fp32, sampled, 3 runs (seeds 5, 6, 7) |" in table and " ± " in table
    assert chart.read_bytes()[:4] == b"\x89PNG"


def test_interval_bars_reach_the_interval_around_the_mean():
    below, above = interval_bars([62.0, 50.0], [spread([60.0, 62.0, 64.0]), None])
    assert below == pytest.approx([4.97, 0.0]) and above == pytest.approx([4.97, 0.0])


# --- options in other orders ------------------------------------------------------------------------------------


def test_shuffled_choices_report_each_order_and_the_consistency(tiny_model_dir, tmp_path, capsys):
    synthesise(tmp_path / "MMAU", RECORDS)
    predictions = run(tmp_path, tiny_model_dir, "preds.json", "--shuffle-choices", "2", "--seed", "1")
    partial = [json.loads(line)["id"] for line in (tmp_path / "preds.partial.jsonl").read_text().splitlines()]
    assert sorted(partial) == sorted(f"{r['id']}{suffix}" for r in RECORDS for suffix in ("", "#1", "#2"))
    for record, prediction in zip(RECORDS, predictions):
        assert [p["order"] for p in prediction["permutations"]] == [1, 2]
        for permutation in prediction["permutations"]:
            assert sorted(permutation["choices"]) == sorted(record["choices"]), "the same options, reordered"
            assert list(permutation["probabilities"]) == permutation["choices"]
    capsys.readouterr()
    assert main(["mmau", "score", str(tmp_path / "preds.json"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["accuracy_by_order"]) == ["original", "permutation 1", "permutation 2"]
    same = sum(len({p["aqa_answer"], *(q["aqa_answer"] for q in p["permutations"])}) == 1 for p in predictions)
    assert result["consistent_items"] == [same, len(RECORDS)]
    assert result["consistency"] == round(100 * same / len(RECORDS), 2)
    assert main(["mmau", "score", str(tmp_path / "preds.json")]) == 0
    assert "same chosen option in every order" in capsys.readouterr().out


def test_a_run_from_before_protocols_existed_resumes(tiny_model_dir, tmp_path, capsys):
    """A manifest written before protocols, seeds and shuffled options were recorded stands for their defaults."""
    synthesise(tmp_path / "MMAU", RECORDS)
    run(tmp_path, tiny_model_dir, "preds.json", "--max-new-tokens", "4")
    manifest_path = tmp_path / "preds.manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for key in ("protocol", "seed", "shuffle_choices"):
        del manifest["settings"][key]
    for key in ("seed", "long_audio"):
        del manifest["settings"]["decoding"][key]
    manifest_path.write_text(json.dumps(manifest))
    capsys.readouterr()
    run(tmp_path, tiny_model_dir, "preds.json", "--max-new-tokens", "4")
    assert f"{len(RECORDS)} of {len(RECORDS)} already answered" in capsys.readouterr().err


# --- seeds that travel with the data ----------------------------------------------------------------------------


def test_a_batch_seed_never_depends_on_the_folder_of_its_clips():
    def asked(folder: str, key: str = "q1\t./clips/a.wav") -> Question:
        return Question(f"{folder}/clips/a.wav", "What is it?", ("Dog", "Cat"), key=key)

    assert batch_seed(0, [asked("/home/me/data")]) == batch_seed(0, [asked("/mnt/copy")])
    assert batch_seed(0, [asked("/data")]) != batch_seed(1, [asked("/data")]), "the run's seed counts"
    assert batch_seed(0, [asked("/data")]) != batch_seed(0, [asked("/data", key="q2\t./clips/a.wav")]), "the id counts"


def test_a_seeded_run_writes_the_same_text_on_a_copy_of_the_data_elsewhere(tiny_model_dir, tmp_path):
    """Same command, same seed, the same files in another folder (as on another machine): the same sampled text."""
    here, there = tmp_path / "here", tmp_path / "somewhere" / "else"
    synthesise(here / "MMAU", RECORDS)
    shutil.copytree(here / "MMAU", there / "MMAU")
    seeded = ["--protocol", "r1-aqa", "--seed", "0", "--max-new-tokens", "12"]
    first = run(here, tiny_model_dir, "preds.json", *seeded)
    again = run(there, tiny_model_dir, "preds.json", *seeded)
    assert [p["raw_output"] for p in first] == [p["raw_output"] for p in again]
    assert len({p["raw_output"] for p in first}) > 1, "the items sampled different text: the check has teeth"
    manifest = json.loads((there / "preds.manifest.json").read_text())
    assert manifest["settings"]["seeding"] == SEEDING


def test_a_seeded_sampled_run_of_the_older_seeding_is_refused_in_one_line(tiny_model_dir, tmp_path, capsys):
    """Resuming it would mix two seedings in one run: the message says why and how to go on."""
    synthesise(tmp_path / "MMAU", RECORDS)
    seeded = ["--protocol", "r1-aqa", "--seed", "0", "--max-new-tokens", "4"]
    run(tmp_path, tiny_model_dir, "preds.json", *seeded, "--limit", "1")
    manifest_path = tmp_path / "preds.manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["settings"]["seeding"]  # as a run of an earlier release recorded it
    manifest_path.write_text(json.dumps(manifest))
    capsys.readouterr()
    args = ["mmau", "run", "--model", str(tiny_model_dir), "--device", "cpu", "--output", str(tmp_path / "preds.json")]
    assert main([*args, *write_data(tmp_path, RECORDS), *seeded]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "older seeding" in error and "--restart" in error
    run(tmp_path, tiny_model_dir, "preds.json", *seeded, "--restart")  # starts over with this seeding


def test_an_older_greedy_seeded_run_still_resumes(tiny_model_dir, tmp_path, capsys):
    """Greedy decoding samples nothing, so the seeding does not matter there (the options' orders never hashed a
    path): such a run resumes."""
    synthesise(tmp_path / "MMAU", RECORDS)
    run(tmp_path, tiny_model_dir, "preds.json", "--seed", "0", "--max-new-tokens", "4", "--limit", "1")
    manifest_path = tmp_path / "preds.manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["settings"]["seeding"] is None
    del manifest["settings"]["seeding"]
    manifest_path.write_text(json.dumps(manifest))
    capsys.readouterr()
    run(tmp_path, tiny_model_dir, "preds.json", "--seed", "0", "--max-new-tokens", "4")
    assert f"1 of {len(RECORDS)} already answered" in capsys.readouterr().err
