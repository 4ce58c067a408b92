"""The app under load, in short: bench/load_test.py's 32 concurrent gradio_client callers against `python app.py` on
the tiny checkpoint, 64 requests mixing valid questions, bad audio, oversized text and control tokens
(docs/benchmarks.md has the full run's figures)."""

from __future__ import annotations

import pytest

from bench.load_test import KINDS, LoadSettings, run

RSS_GROWTH_MIB = 400  # the bound docs/benchmarks.md states: the app's memory settles well below this over long runs


@pytest.fixture(scope="module")
def report(tiny_model_dir) -> dict:
    return run(LoadSettings(model=str(tiny_model_dir), callers=32, requests=64, keep_files=5))


def test_every_request_is_answered_or_refused_with_a_message(report):
    assert report["errors"] == 0, report["error_messages"]
    assert report["requests"] == 64
    assert report["answered"] + report["refused_with_message"] + report["turned_away_queue_full"] == 64
    assert report["answered"] >= 1 and report["refused_with_message"] >= 1
    for kind in KINDS[1:]:  # the bad ones are never answered
        assert report["by_kind"][kind]["answered"] == 0


def test_the_app_still_answers_within_its_memory_and_disk_bounds(report):
    assert report["answers_afterwards"]
    assert report["rss_mib"]["after"] - report["rss_mib"]["before"] < RSS_GROWTH_MIB
    cache = report["cache"]
    assert cache["oldest_s"] <= cache["bound_s"] + 2, "the cleanup keeps no file much past its age"
