"""`aqa eval leaderboard`: runs of two tiny models of two families under two protocols, each beside its no-audio
baseline, in one table per benchmark version with pooled seeds, published rows only on their version, Markdown, CSV
and a chart; and the one-line refusals."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from test_eval import MMAR_CASES, mmar_record
from test_mmau import made_up_records, synthesise

from aqa.cli.main import main
from aqa.eval.benchmarks import MMAR, MMAU
from aqa.eval.leaderboard import published_figures
from aqa.eval.manifest import run_files
from aqa.eval.score import spread
from aqa.families import FAMILIES

FAMILY_RUNS = ("qwen2-audio", "qwen2.5-omni")
PROTOCOLS = {"greedy": [], "r1-aqa": ["--seed", "0", "--runs", "2"]}  # r1-aqa samples: two seeded runs


def table_rows(text: str) -> list[list[str]]:
    """The Markdown table's rows (header and body), cells stripped."""
    lines = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("|---")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_two_families_two_protocols_each_beside_its_baseline(family_dirs, tmp_path, capsys):
    records = made_up_records(4)
    data = tmp_path / "mmau.json"
    data.write_text(json.dumps(records))
    synthesise(tmp_path / "MMAU", records)
    outputs = []
    for family in FAMILY_RUNS:
        for protocol, extra in PROTOCOLS.items():
            for audio in ("clip", "none"):
                output = tmp_path / f"{family}-{protocol}-{audio}" / "preds.json"
                args = ["mmau", "run", "--model", str(family_dirs[family]), "--data", str(data), "--audio-dir"]
                args += [str(tmp_path / "MMAU"), "--output", str(output), "--device", "cpu", "--max-new-tokens", "4"]
                assert main([*args, "--protocol", protocol, "--audio", audio, *extra]) == 0
                outputs.append(output)
    capsys.readouterr()
    board = ["eval", "leaderboard", *map(str, outputs), "--csv", str(tmp_path / "lb.csv")]
    assert main([*board, "--chart", str(tmp_path / "lb.png")]) == 0
    text = capsys.readouterr().out
    assert text.count("### Accuracy (%) on MMAU test-mini, unknown version") == 1  # one file: one table
    header, *rows = table_rows(text)
    assert header[:4] == ["Model", "Family", "Method", "Audio"]
    assert header[-3:] == ["Δ vs with audio", "Runs", "Questions"]
    assert len(rows) == 8
    column = {name: header.index(name) for name in header}
    for with_audio, without in zip(rows[::2], rows[1::2]):  # each baseline right under its run with audio
        assert with_audio[column["Audio"]] == "with audio"
        assert without[column["Audio"]] == "without audio (prompt only)"
        assert [with_audio[i] for i in range(3)] == [without[i] for i in range(3)]  # same model, family, method
        delta = float(without[column["Average"]].split()[0]) - float(with_audio[column["Average"]].split()[0])
        assert float(without[column["Δ vs with audio"]]) == pytest.approx(delta, abs=0.01)
    assert {row[column["Family"]] for row in rows} == set(FAMILY_RUNS)
    sampled = [row for row in rows if "r1-aqa protocol" in row[column["Method"]]]
    assert len(sampled) == 4 and all(row[column["Runs"]] == "2" and "±" in row[column["Average"]] for row in sampled)

    # every figure is its runs' own score (the mean of the two seeded runs' for r1-aqa)
    for output, row in zip(outputs, rows):
        totals = []
        for file in run_files(output):
            assert main(["mmau", "score", str(file), "--json"]) == 0
            totals.append(json.loads(capsys.readouterr().out)["total"])
        assert float(row[column["Average"]].split()[0]) == pytest.approx(sum(totals) / len(totals), abs=0.01)

    with (tmp_path / "lb.csv").open() as handle:
        figures = list(csv.DictReader(handle))
    assert len(figures) == 8 * 4  # Sound, Music, Speech, Average per row
    assert {line["audio"] for line in figures} == {"clip", "none"}
    assert (tmp_path / "lb.png").read_bytes()[:4] == b"\x89PNG"


def write_run(folder: Path, records: list[dict], benchmark: str, version: str | None, settings: dict) -> Path:
    """A predictions file and a manifest, as a run writes them (made by hand: known figures)."""
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / "preds.json"
    output.write_text(json.dumps(records))
    manifest = {
        "benchmark": benchmark,
        "model": "mispeech/r1-aqa",
        "settings": {"family": "qwen2-audio", "precision": "bf16", "protocol": "greedy", **settings},
        benchmark: {"version": version, "sha256": f"{version}-file", "records_in_file": len(records)},
    }
    output.with_suffix(".manifest.json").write_text(json.dumps(manifest))
    return output


def mmau_records(right: int, count: int = 4) -> list[dict]:
    records = made_up_records(count)
    for number, record in enumerate(records):
        record["model_output"] = "A tone" if number < right else "Noise"
    return records


def test_runs_of_one_setup_are_pooled_with_their_interval(tmp_path, capsys):
    """Two seeds of one setup, given as two runs (50 and 75): one row, their mean ± the half-width of the 95%
    interval (t with one degree of freedom: 12.706 x 17.68 / sqrt 2 = 158.8 around 62.50)."""
    first = write_run(tmp_path / "a", mmau_records(2), "mmau", None, {"seed": 0})
    second = write_run(tmp_path / "b", mmau_records(3), "mmau", None, {"seed": 1})
    assert main(["eval", "leaderboard", str(first), str(second), "--csv", str(tmp_path / "lb.csv")]) == 0
    [_, row] = table_rows(capsys.readouterr().out)
    interval = spread([50.0, 75.0])
    assert interval.high - interval.mean == pytest.approx(158.8, abs=0.05)
    assert row[0] == "mispeech/r1-aqa" and row[-2:] == ["2", "4"]
    assert row[-4] == f"62.50 ± {(interval.high - interval.low) / 2:.2f}"
    average = [line for line in csv.DictReader(io.StringIO((tmp_path / "lb.csv").read_text()))][-1]
    assert (average["column"], average["value"], average["seeds"]) == ("Average", "62.5", "0 1")
    assert (float(average["ci95_low"]), float(average["ci95_high"])) == (interval.low, interval.high)


def test_published_rows_appear_only_beside_their_version(tmp_path, capsys):
    """The benchmark's reference rows and the families' published figures are shown where the version is the
    table's; a family figure the reference rows already hold is not repeated."""
    old = write_run(tmp_path / "old", mmau_records(1), "mmau", "2025-03-25", {})
    new = write_run(tmp_path / "new", mmau_records(1), "mmau", "2025-08-09", {})
    mmar = [mmar_record(n, *case[:3]) | {"answer_prediction": "Dog"} for n, case in enumerate(MMAR_CASES)]
    on_mmar = write_run(tmp_path / "mmar", mmar, "mmar", "2026-02-16", {})
    assert main(["eval", "leaderboard", str(old), str(new), str(on_mmar)]) == 0
    text = capsys.readouterr().out
    old_table, new_table, mmar_table = text.split("### ")[1:]
    assert "version 2025-03-25" in old_table and "| 69.37 | 66.77 | 57.36 | 64.50 |" in old_table
    assert "Qwen/Qwen2.5-Omni-7B" in old_table and "| 65.60 |" in old_table  # its v1 figure
    assert old_table.count("64.50") == 1, "R1-AQA's published 64.50 is the reference row, not repeated"
    assert "version 2025-08-09" in new_table and "64.50" not in new_table
    for figure in ("71.50", "73.30", "77.50", "75.40"):  # Qwen2.5-Omni, AF3, Qwen3-Omni Instruct and Thinking
        assert f"| {figure} |" in new_table
    assert "MMAR, version 2026-02-16" in mmar_table and "| 66.40 |" in mmar_table  # Qwen3-Omni Thinking
    assert mmar_table.count("| 47.60 |") == 1 and mmar_table.count("| 56.70 |") == 1


def test_every_published_figure_is_read():
    """The families publish their figures as text (`aqa models`): each one is read, with its version, so that a
    reworded figure cannot silently drop out of the leaderboard."""
    for family in FAMILIES.values():
        for checkpoint in family.published:
            if checkpoint.mmau != "—":
                assert published_figures(MMAU, checkpoint.mmau, "—"), checkpoint.mmau
            if checkpoint.mmar != "—":
                assert published_figures(MMAR, "—", checkpoint.mmar), checkpoint.mmar


@pytest.mark.parametrize(
    "make, message",
    [
        ("versions", "were made on different MMAU test-mini files (2025-03-25, 2025-08-09): figures of different "),
        ("manifest", "has no manifest (preds.manifest.json): the leaderboard reads each run's benchmark"),
    ],
)
def test_one_line_refusals(make, message, tmp_path, capsys):
    if make == "versions":  # --runs files of one name, made on two versions of the file
        for number, version in ((1, "2025-03-25"), (2, "2025-08-09")):
            run = write_run(tmp_path / f"r{number}", mmau_records(1), "mmau", version, {"seed": number})
            run.rename(tmp_path / f"preds.run{number}.json")
            run.with_suffix(".manifest.json").rename(tmp_path / f"preds.run{number}.manifest.json")
        target = tmp_path / "preds.json"
    else:
        target = tmp_path / "preds.json"
        target.write_text(json.dumps(mmau_records(1)))
    assert main(["eval", "leaderboard", str(target)]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
