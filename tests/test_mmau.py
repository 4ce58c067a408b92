"""`aqa mmau run` and `sweep` end to end on the tiny model, with audio the tests synthesise for MMAU's records.

The first run is killed part-way (SIGKILL, as a crash or a pre-empted job) and resumed: no answer may be lost or
duplicated. MMAU's question files are read from $AQA_MMAU_DIR or ../shared/data/mmau (never copied into the
project); the tests skip, saying so, where neither has them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MMAU_VERSIONS, ROOT, mmau_file

from aqa.cli.main import main
from aqa.eval.score import official_match, score_records
from aqa.jsonl import read_jsonl

LIMIT = 20
ABSENT = 2  # the last records' audio is left out: a missing file is reported, not fatal
FAST = ["--device", "cpu", "--batch-size", "2", "--max-new-tokens", "4"]  # the tiny model's answers are noise


def mmau_records(version: str, count: int = LIMIT) -> list[dict]:
    return json.loads(mmau_file(version).read_text())[:count]


def synthesise(audio_dir: Path, records: list[dict]) -> None:
    """Short tones and noise (1-3 s, various rates) at each record's audio_id under audio_dir."""
    sounds = (["sine", "440"], ["pinknoise"], ["square", "220"], ["whitenoise"])
    for number, record in enumerate(records):
        path = audio_dir / record["audio_id"]
        path.parent.mkdir(parents=True, exist_ok=True)
        rate = ("16000", "22050", "8000")[number % 3]
        length = str(1 + number % 3)
        sound = sounds[number % len(sounds)]
        subprocess.run(["sox", "-n", "-r", rate, str(path), "synth", length, *sound, "vol", "0.3"], check=True)


def wait_for_rows(path: Path, process: subprocess.Popen, timeout: float = 300) -> list[dict]:
    """Poll the partial JSONL until the first batch is in it, then kill the process at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        rows = read_jsonl(path) if path.exists() else []
        if rows:
            process.kill()
            process.wait()
            return read_jsonl(path)
        time.sleep(0.01)
    process.kill()
    _, stderr = process.communicate()
    raise AssertionError(f"no answer appeared before the run ended (rc {process.returncode}):\n{stderr}")


@pytest.mark.parametrize("version", MMAU_VERSIONS)
def test_run_killed_part_way_resumes_without_loss_or_duplicates(version, tiny_model_dir, tmp_path, capsys):
    records = mmau_records(version)
    audio_dir = tmp_path / "MMAU"
    synthesise(audio_dir, records[: LIMIT - ABSENT])
    output = tmp_path / "run" / "preds.json"
    partial = output.with_suffix(".partial.jsonl")
    args = ["mmau", "run", "--model", str(tiny_model_dir), "--data", str(mmau_file(version))]
    args += ["--audio-dir", str(audio_dir), "--output", str(output), "--limit", str(LIMIT), *FAST]

    # --- a run killed as soon as its first batch is on disk, plus a line cut off mid-write -------------------
    process = subprocess.Popen(
        [sys.executable, "-m", "aqa", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    before_kill = wait_for_rows(partial, process)
    assert 0 < len(before_kill) < LIMIT - ABSENT, "the run was not killed part-way"
    with partial.open("a", encoding="utf-8") as handle:
        handle.write('{"id": "cut-off mid-wri')

    # --- the rerun resumes ------------------------------------------------------------------------------------
    assert main(args) == 0
    stderr = capsys.readouterr().err
    assert f"{len(before_kill)} of {LIMIT} already answered" in stderr
    assert f"warning: {ABSENT} audio file(s) not found" in stderr

    rows = read_jsonl(partial)
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)), "an answer was written twice"
    assert set(ids) == {r["id"] for r in records[: LIMIT - ABSENT]}, "an answer was lost"
    kept = {row["id"]: row for row in rows}
    assert all(kept[row["id"]] == row for row in before_kill), "answers from before the kill were redone"

    predictions = json.loads(output.read_text())
    check_predictions(predictions, records)
    check_manifest(json.loads(output.with_suffix(".manifest.json").read_text()), version, records, len(before_kill))

    # --- the missing clips appear: a rerun answers just those -------------------------------------------------
    synthesise(audio_dir, records)
    assert main(args) == 0
    assert f"{LIMIT - ABSENT} of {LIMIT} already answered" in capsys.readouterr().err
    assert all("model_output" in p for p in json.loads(output.read_text()))

    # --- score ------------------------------------------------------------------------------------------------
    assert main(["mmau", "score", str(output), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["n"], result["missing"], result["version"]) == (LIMIT, 0, version)
    expected = sum(official_match(p["answer"], p["model_output"], p["choices"]) for p in json.loads(output.read_text()))
    assert result["total"] == round(100 * expected / LIMIT, 2)


def check_predictions(predictions: list[dict], records: list[dict]) -> None:
    """MMAU's evaluation.py contract: a JSON list of the records, untouched, plus `model_output` where answered."""
    assert [p["id"] for p in predictions] == [r["id"] for r in records]
    for prediction, record in zip(predictions, records):
        assert {key: prediction[key] for key in record} == record
    answered, missing = predictions[: LIMIT - ABSENT], predictions[LIMIT - ABSENT :]
    for prediction in answered:
        assert isinstance(prediction["model_output"], str)
        assert prediction["model_prediction"] == prediction["model_output"]
        assert isinstance(prediction["raw_output"], str) and prediction["aqa_answer"] in prediction["choices"]
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0)
    for prediction in missing:
        assert "model_output" not in prediction and "audio file not found" in prediction["error"]
    assert score_records(predictions).missing == tuple(p["id"] for p in missing)


def check_manifest(manifest: dict, version: str, records: list[dict], answered_before_kill: int) -> None:
    assert manifest["mmau"]["version"] == version and manifest["mmau"]["records_evaluated"] == LIMIT
    assert len(manifest["mmau"]["sha256"]) == 64
    assert manifest["settings"]["precision"] == "fp32" and manifest["settings"]["decoding"]["max_new_tokens"] == 4
    assert manifest["missing_audio"] == {"count": ABSENT, "ids": sorted(r["id"] for r in records[LIMIT - ABSENT :])}
    assert manifest["answered"] == LIMIT - ABSENT
    killed, resumed = manifest["runs"]
    assert killed["batch_size"] == 2 and "stopped" not in killed  # SIGKILL: the session never closed
    assert resumed["answered"] == LIMIT - ABSENT - answered_before_kill and "stopped" in resumed
    assert resumed["answer_seconds"] > 0 and resumed["seconds_per_question"] > 0


def test_items_with_repeated_options_are_asked_verbatim(tiny_model_dir, tmp_path, capsys):
    """MMAU repeats an option in some items (['four', 'nine', 'fourteen', 'fourteen']); R1-AQA asked them as is."""
    records = json.loads(mmau_file("2025-03-25").read_text())
    repeated = [r for r in records if len(set(r["choices"])) < len(r["choices"])][:2]
    data = tmp_path / "mmau.json"
    data.write_text(json.dumps(repeated))
    synthesise(tmp_path / "MMAU", repeated)
    output = tmp_path / "preds.json"
    args = ["mmau", "run", "--model", str(tiny_model_dir), "--data", str(data), "--audio-dir", str(tmp_path / "MMAU")]
    assert main([*args, "--output", str(output), *FAST]) == 0
    for prediction in json.loads(output.read_text()):
        assert "error" not in prediction and isinstance(prediction["model_output"], str)
        assert list(prediction["probabilities"]) == list(dict.fromkeys(prediction["choices"]))
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0)
    assert "unknown version" in capsys.readouterr().out  # a hand-made file is no known MMAU release

    # a rerun with other decoding settings must not mix its answers into these
    assert main([*args, "--output", str(output), *FAST[:-1], "8"]) == 2
    assert "other settings (decoding" in capsys.readouterr().err
    assert main([*args, "--output", str(output), *FAST[:-1], "8", "--restart", "--limit", "1"]) == 0
    assert len(read_jsonl(output.with_suffix(".partial.jsonl"))) == 1  # the earlier answers were discarded


def test_sweep_evaluates_each_checkpoint_into_one_table(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    for step in (10, 2):  # created out of order; the table is in step order
        (out / f"checkpoint-{step}").parent.mkdir(parents=True, exist_ok=True)
        (out / f"checkpoint-{step}").symlink_to(tiny_model_dir, target_is_directory=True)
    records = mmau_records("2025-08-09", 4)
    synthesise(tmp_path / "MMAU", records)
    sweep = tmp_path / "sweep"
    args = ["mmau", "sweep", "--checkpoints", str(out / "checkpoint-10"), str(out / "checkpoint-2")]
    args += ["--data", str(mmau_file("2025-08-09")), "--audio-dir", str(tmp_path / "MMAU"), "--limit", "4"]
    args += ["--output-dir", str(sweep), "--holdout", "0.5", "--chart", str(sweep / "sweep.png"), *FAST]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert table.index("checkpoint-2") < table.index("checkpoint-10")
    assert "| Checkpoint | Sound | Music | Speech | Average | Selection | Held-out |" in table
    assert "(picked)" in table and "version 2025-08-09" in table and "2 selection / 2 held-out" in table
    summary = json.loads((sweep / "sweep.json").read_text())
    assert set(summary["checkpoints"]) == {"checkpoint-2", "checkpoint-10"}
    assert summary["checkpoints"]["checkpoint-2"]["held_out"]["n"] == 2
    for name in ("checkpoint-2", "checkpoint-10"):
        assert len(json.loads((sweep / name / "preds.json").read_text())) == 4
    assert (sweep / "sweep.md").read_text().strip() == table.strip()
    assert (sweep / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def made_up_records(count: int) -> list[dict]:
    """MMAU-format records the test writes itself (no MMAU file needed)."""
    tasks = ("sound", "music", "speech")
    return [
        {
            "id": f"made-up-{number}",
            "audio_id": f"./test-mini-audios/made-up-{number}.wav",
            "question": "What is heard?",
            "choices": ["A tone", "Noise", "Speech", "Music"],
            "answer": "A tone",
            "task": tasks[number % 3],
            "difficulty": "easy",
            "sub-category": "Made up",
        }
        for number in range(count)
    ]


@pytest.mark.parametrize("flag, on_cpu", [("--embeddings-on-cpu", True), ("--no-embeddings-on-cpu", False)])
def test_model_flags_reach_the_model_that_run_and_sweep_load(flag, on_cpu, tiny_model_dir, tmp_path, monkeypatch):
    """Every model flag goes through one ModelSpec to the loader: the loaded model has its embedding table where
    the flag says, and the manifest records where it was."""
    from aqa.eval import run as run_module
    from aqa.model import HostEmbedding

    records = made_up_records(2)
    data = tmp_path / "mmau.json"
    data.write_text(json.dumps(records))
    synthesise(tmp_path / "MMAU", records)
    loaded, real = [], run_module.load
    monkeypatch.setattr(run_module, "load", lambda spec: loaded.append(real(spec)) or loaded[-1])
    common = ["--data", str(data), "--audio-dir", str(tmp_path / "MMAU"), *FAST, "--precision", "fp32", flag]
    output = tmp_path / "run" / "preds.json"
    assert main(["mmau", "run", "--model", str(tiny_model_dir), "--output", str(output), *common]) == 0
    sweep = ["mmau", "sweep", "--checkpoints", str(tiny_model_dir), "--output-dir", str(tmp_path / "sweep")]
    assert main([*sweep, *common]) == 0
    assert len(loaded) == 2
    for model in loaded:
        assert isinstance(model.hf.get_input_embeddings(), HostEmbedding) is on_cpu
        assert (model.precision, model.device.type) == ("fp32", "cpu")
    manifest = json.loads(output.with_suffix(".manifest.json").read_text())
    assert manifest["runs"][-1]["embeddings_on_cpu"] is on_cpu
