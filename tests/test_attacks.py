"""The app under attack, in short: bench/attacks.py's requests against `python app.py` on the tiny checkpoint (audio
bombs and playlists, big and chunked bodies, a long clip in thinking mode through the page's own event with a 10 s
time limit, malformed fields, a path outside the uploads, one client's many questions, uploads past a small disk
quota), then SIGTERM. docs/benchmarks.md has the full run's figures."""

from __future__ import annotations

import pytest

from bench.attacks import run

REFUSED_FAST_MIB = 150  # what an audio bomb or a playlist may cost the server (its peak RSS over its RSS before)
BODY_MIB = 50  # what a refused body may cost


@pytest.fixture(scope="module")
def report(tiny_model_dir) -> dict:
    return run(str(tiny_model_dir), quick=True)


def outcomes(report: dict, *words: str) -> list[dict]:
    found = [o for o in report["outcomes"] if all(word in o["attack"] for word in words)]
    assert found, f"no attack named {words}"
    return found


def test_every_attack_is_refused_and_the_app_answers_after_each(report):
    for outcome in report["outcomes"]:
        assert outcome["normal_after"], f"no normal answer after {outcome['attack']}"
        if any(word in outcome["attack"] for word in ("warm-up", "MB uploads", "thinking")):
            continue  # answered, each as its own test below says
        assert outcome["result"] == "refused", outcome
        assert "\n" not in outcome["message"] and "Traceback" not in outcome["message"]
    assert not report["traceback_in_log"]


def test_audio_bombs_and_playlists_cost_next_to_nothing(report):
    for outcome in outcomes(report, "FLAC") + outcomes(report, "1 Hz") + outcomes(report, ".m3u8"):
        assert outcome["rss_growth_mib"] <= REFUSED_FAST_MIB, outcome
    assert "the clip is 600 s long (at most 300 s)" in outcomes(report, "FLAC")[0]["message"]
    assert "sample rate 1 Hz is outside 4-384 kHz" in outcomes(report, "1 Hz")[0]["message"]


def test_big_bodies_are_refused_before_they_are_held(report):
    for outcome in outcomes(report, "MB", "JSON bod"):
        assert outcome["message"].startswith("HTTP [413]"), outcome
        assert outcome["rss_growth_mib"] <= BODY_MIB, outcome


def test_a_long_thinking_run_holds_the_models_no_longer_than_the_time_limit(report):
    [outcome] = outcomes(report, "thinking mode")
    extra = outcome["extra"]
    assert outcome["result"] == "stopped" and "Cut at the time limit (10 s per question)" in outcome["message"]
    assert extra["held_s"] <= extra["limit_s"]
    assert extra["normal_meanwhile_answered"], "a question sent meanwhile is answered once the run is cut"


def test_one_client_holds_one_place(report):
    [outcome] = outcomes(report, "one client")
    assert outcome["message"].startswith("1 answered, 9 refused (one place per client)")


def test_the_cache_stays_under_its_quota_and_nothing_is_left_after_sigterm(report):
    [outcome] = outcomes(report, "MB uploads")
    extra = outcome["extra"]
    assert extra["statuses"] == [200] * len(extra["statuses"]), "room made for each by removing the oldest unused"
    assert extra["largest_cache_mib"] <= extra["quota_mib"]
    assert report["bytes_left_after_sigterm"] == 0
