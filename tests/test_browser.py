"""The app in a real headless Chromium (Debian's, driven by Playwright), as a tester uses it: a page that opens ready,
examples, typed options, keyboard, errors that keep the page, dimmed stale results, the text streaming in, Stop, two
models side by side, a long clip window by window, the microphone, judging, and the downloaded history.

Set AQA_UPDATE_SCREENSHOT=1 to also write the run's screenshots to assets/ (the README shows them): desktop
(screenshot.png), phone width (screenshot_phone.png), two models side by side (screenshot_compare.png) and a long
clip's windows (screenshot_windows.png).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from test_app import SETTINGS, running_app

import app
import aqa
from aqa.limits import Limits

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"  # Debian's package (.ci/run installs it); Playwright downloads no browser here
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The microphone: granted without asking, and fed from a WAV file the fixture makes (Chromium loops it).
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
CLIP = app.ASSETS / "speech_man.ogg"
QUESTION = "Based on the given audio, identify the source of the speaking voice."
SCREENSHOT_LIMIT = 300_000  # bytes: they are committed for the README
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
ANSWERED = 120_000  # ms to wait for an answer (the first one warms the model up)
HISTORY_ROWS = "#history [role=gridcell][data-col='0']"  # one per row of the history table
FRESH, STALE = re.compile(r"\bfresh\b"), re.compile(r"\bstale\b")
# Every value the page writes into a text box, in order: [box id, value]. Svelte sets a textarea's `value`
# property, so a setter wrapped before the page loads sees each update the server streams, however fast they come.
RECORD_TEXT = """
const value = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, "value");
window.aqaTexts = [];
Object.defineProperty(HTMLTextAreaElement.prototype, "value", {
  configurable: true,
  get() { return value.get.call(this); },
  set(text) {
    window.aqaTexts.push([this.closest("[id]")?.id, text]);
    value.set.call(this, text);
  },
});
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[Browser]:
    """Chromium, its fake microphone playing a spoken sentence."""
    assert shutil.which(CHROMIUM), "the browser test needs Debian's chromium (apt-get install chromium)"
    microphone = tmp_path_factory.mktemp("microphone") / "speech.wav"
    spoken = microphone.with_name("spoken.wav")
    subprocess.run(["espeak-ng", "-v", "en", "-w", str(spoken), "Is this a man or a woman speaking?"], check=True)
    subprocess.run(["sox", str(spoken), "-r", "48000", "-b", "16", "-c", "1", str(microphone)], check=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={microphone}"]
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def served(tiny_model, browser) -> Iterator[tuple[Browser, str]]:
    """The page as served by default (the library's caps), 64 new tokens at most, clips up to 120 s."""
    settings = replace(SETTINGS, limits=Limits(), max_new_tokens=64, max_seconds=120)
    with running_app(tiny_model, settings) as url:
        yield browser, url


@pytest.fixture(scope="module")
def compare_served(compare_server, browser) -> Iterator[tuple[Browser, str]]:
    """`python app.py --model TINY --compare TINY2`, with the core's token budgets (256; 1024 in thinking mode: a
    few seconds of text on the CPU, time enough to press Stop)."""
    yield browser, compare_server


def open_page(served, viewport=DESKTOP, record_text: bool = False) -> Page:
    """A fresh page (its own history) on the app; `record_text` keeps every value its text boxes are given."""
    browser, url = served
    page = browser.new_page(viewport=viewport, accept_downloads=True)
    if record_text:
        page.add_init_script(RECORD_TEXT)
    # Nothing but the app: the theme's web fonts and anything else from outside are refused, not waited for.
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
    page.goto(url)
    page.wait_for_selector("#answer-button", timeout=60_000)
    return page


@pytest.fixture
def page(served) -> Iterator[Page]:
    page = open_page(served)
    yield page
    page.close()


def answer_and_wait(page: Page, submit) -> None:
    """Submit (a click or a key) and wait for this answer's history row."""
    rows = history_rows(page)
    submit()
    try:
        expect(page.locator(HISTORY_ROWS)).to_have_count(rows + 1, timeout=ANSWERED)
    except AssertionError:
        raise AssertionError(f"no answer; the status line reads: {status(page)}") from None


def load_example(page: Page, index: int) -> None:
    """Click an example and wait until its clip, question and options are all in the inputs."""
    clip, question, options = app.EXAMPLES[index]
    with page.expect_response(lambda response: "/gradio_api/run/predict" in response.url):  # handled: the page
        page.locator("#examples tbody tr").nth(index).click()  # may already show this example (the first one)
    expect(page.locator("#question textarea")).to_have_value(question)
    expect(page.locator("#options textarea")).to_have_value("\n".join(options))
    expect(page.locator("#audio [data-testid=download-link]")).to_have_attribute("href", re.compile(f"/{clip}$"))


def upload(page: Page, clip) -> None:
    """Replace the clip on the page (the first example's, on a fresh page) with a file."""
    page.locator("#audio button[aria-label='Clear']").first.click()
    page.locator("#audio input[type=file]").set_input_files(str(clip))
    expect(page.locator("#audio [data-testid=download-link]")).to_have_attribute("href", re.compile(f"/{clip.name}$"))


def window_rows(page: Page, suffix: str = ""):
    """The first cell (the window's span) of each row of a panel's window table."""
    return page.locator(f"#windows{suffix} [role=gridcell][data-col='0']")


def history_rows(page: Page) -> int:
    return page.locator(HISTORY_ROWS).count()


def history_row(page: Page, row: int):
    """The cells of a row of the history table (a virtual table: rows are divs of grid cells)."""
    return page.locator(f"#history [role=gridcell][data-row='{row}']")


def status(page: Page) -> str:
    return page.locator("#status").inner_text()


def test_typed_options_are_kept_exactly_and_enter_answers(page, tmp_path):
    """One option per line: typed, pasted, edited, every character is what the app asks; Enter in the question
    answers. The box has no control that could move the options elsewhere."""
    upload(page, CLIP)
    options = page.locator("#options textarea")
    options.fill("")  # the page opens with the first example's options
    options.click()
    options.press_sequentially("Man")
    expect(options).to_have_value("Man")
    options.press("Enter")
    options.press_sequentially("Woman speaking, very long " + "and wrapping " * 12)
    options.press("Enter")
    options.press_sequentially("  Child  ")
    options.press("Enter")  # an empty last line is no option
    typed = ["Man", "Woman speaking, very long " + "and wrapping " * 12, "Child"]
    assert app.options_from_text(options.input_value()) == [option.strip() for option in typed]
    assert page.locator("#options button, #options input, #options select").count() == 0
    question = page.locator("#question textarea")
    question.fill(QUESTION)
    answer_and_wait(page, lambda: question.press("Enter"))
    assert question.input_value() == QUESTION, "Enter answered rather than adding a line"
    probabilities = page.locator("#probabilities")
    for option in typed:
        expect(probabilities).to_contain_text(option.strip()[:20])
    assert probabilities.inner_text().count("%") == 3
    assert page.locator("#answer textarea").input_value() in [option.strip() for option in typed]
    expect(page.locator("#status")).to_contain_text("Answered in")
    expect(page.locator("#details")).to_contain_text("How it was chosen: the ")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_each_example_loads_what_is_clicked(served, viewport):
    """Every example, clicked in turn: its clip, question and every option are loaded, and the question and the
    Answer button are in view."""
    page = open_page(served, viewport)
    rows = page.locator("#examples tbody tr")
    expect(rows).to_have_count(len(app.EXAMPLES))
    for index in [*range(len(app.EXAMPLES)), 0]:  # and back to the first
        clip, question, options = app.EXAMPLES[index]
        expect(rows.nth(index)).to_contain_text(" | ".join(options))  # all of them, as plain text
        load_example(page, index)
        expect(page.locator("#question")).to_be_in_viewport()
        expect(page.locator("#answer-button")).to_be_in_viewport()
    page.close()


def test_bad_input_keeps_results_and_history_and_lists_every_problem(page):
    load_example(page, 2)
    answer_and_wait(page, lambda: page.locator("#answer-button").click())
    answer = page.locator("#answer textarea").input_value()
    expect(page.locator("#results")).to_have_class(FRESH)
    # Two problems at once: no question, one option only.
    page.locator("#question textarea").fill("")
    page.locator("#options textarea").fill("Two")
    expect(page.locator("#results")).to_have_class(STALE)  # dimmed: the inputs are not those answered
    page.locator("#answer-button").click()
    expect(page.locator("#status")).to_contain_text("the question is empty", timeout=30_000)
    expect(page.locator("#status")).to_contain_text("give at least 2 options (got 1)")
    # The results, the history and the message stay: no toast, no error badges.
    page.wait_for_timeout(1_500)
    assert page.locator("[data-testid=toast-body]").count() == 0
    assert page.get_by_text("Error", exact=True).count() == 0
    expect(page.locator("#answer textarea")).to_have_value(answer)
    assert history_rows(page) == 1
    page.locator("#think label").click()  # other actions on the page leave the message in place
    expect(page.locator("#status")).to_contain_text("the question is empty")
    # The next run replaces it.
    page.locator("#question textarea").fill("How many beeps?")
    page.locator("#options textarea").fill("Two\nThree")
    answer_and_wait(page, lambda: page.locator("#answer-button").click())
    expect(page.locator("#status")).to_contain_text("Answered in")
    expect(page.locator("#results")).to_have_class(FRESH)


def test_ctrl_enter_answers_from_the_options(page):
    load_example(page, 3)
    page.locator("#options textarea").click()
    answer_and_wait(page, lambda: page.keyboard.press("Control+Enter"))
    assert history_rows(page) == 1, "one answer, not two"
    assert page.locator("#options textarea").input_value() == "\n".join(app.EXAMPLES[3][2]), "no line was added"


def test_history_is_judged_and_downloads_with_every_column(page, tmp_path):
    for index in (0, 2):  # two answers: the newest comes first
        load_example(page, index)
        answer_and_wait(page, lambda: page.locator("#answer-button").click())
    expect(history_row(page, 0).nth(2)).to_have_text(app.EXAMPLES[2][0])
    # Judge the older answer: pick its row, its expected option and write a comment.
    history_row(page, 1).nth(3).click()
    expect(page.locator("#judging")).to_contain_text("Judging #1")
    page.locator("#expected").get_by_text("Woman", exact=True).click()
    comment = page.locator("#comment textarea")
    comment.fill("the voice is low; a man")
    comment.press("Enter")
    older = history_row(page, 1)
    expect(older.nth(9)).to_have_text("the voice is low; a man")
    expect(older.nth(7)).to_have_text("Woman")
    expect(older.nth(8)).to_have_text(re.compile(r"^\s*[✓✗]\s*$"))

    comment.blur()
    shot(page, "screenshot.png", tmp_path, full_page=True)
    rows = download(page, ".csv", tmp_path)
    assert list(rows[0]) == app.HISTORY_COLUMNS
    assert [row["clip"] for row in rows] == [app.EXAMPLES[2][0], app.EXAMPLES[0][0]]  # newest first
    judged = rows[1]
    assert (judged["question"], json.loads(judged["options"])) == (QUESTION, app.EXAMPLES[0][2])
    assert (judged["expected"], judged["comment"]) == ("Woman", "the voice is low; a man")
    assert judged["correct"] == ("yes" if judged["answer"] == "Woman" else "no")
    assert set(json.loads(judged["probabilities"])) == set(app.EXAMPLES[0][2])
    assert judged["thinking mode"] == "no" and judged["model"] and judged["precision"] == "fp32"
    assert float(judged["clip seconds"]) > 0 and float(judged["seconds"]) > 0
    lines = download(page, ".jsonl", tmp_path)
    assert [line["expected"] for line in lines] == [None, "Woman"]


def test_phone_width(served, tmp_path):
    """On a 390 px screen: an example picked, answered, and the answer right under the Answer button."""
    page = open_page(served, PHONE)
    load_example(page, 4)
    answer_and_wait(page, lambda: page.locator("#answer-button").click())
    page.locator("#question").evaluate("element => element.scrollIntoView({block: 'start'})")
    expect(page.locator("#answer-button")).to_be_in_viewport()
    expect(page.locator("#answer")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "nothing wider than the screen"
    shot(page, "screenshot_phone.png", tmp_path)
    page.close()


def test_a_fresh_page_answers_the_loaded_example(page):
    """The page opens with the first example loaded: Answer answers it at once, with no error anywhere."""
    clip, question, options = app.EXAMPLES[0]
    expect(page.locator("#question textarea")).to_have_value(question)
    expect(page.locator("#options textarea")).to_have_value("\n".join(options))
    expect(page.locator("#audio [data-testid=download-link]")).to_have_attribute("href", re.compile(f"/{clip}$"))
    answer_and_wait(page, lambda: page.locator("#answer-button").click())
    assert page.locator("#answer textarea").input_value() in options
    expect(history_row(page, 0).nth(2)).to_have_text(clip)
    expect(page.locator("#status")).to_contain_text("Answered in")
    assert page.get_by_text("Error", exact=True).count() == 0


def test_thinking_mode_text_streams_in_before_the_answer(served):
    """Thinking mode, 64 new tokens: the model's text is seen growing, update after update, while the answer box is
    still empty; the answer and the probabilities come with the last update."""
    page = open_page(served, record_text=True)
    page.locator("#think label").click()
    page.evaluate("window.aqaTexts = []")
    answer_and_wait(page, lambda: page.locator("#answer-button").click())
    shown = page.evaluate("window.aqaTexts")
    answered_at = next(index for index, (box, text) in enumerate(shown) if box == "answer" and text)
    growing = [text for box, text in shown[:answered_at] if box == "raw" and text]
    assert len(growing) >= 2, f"the text came in {len(growing)} update(s) before the answer"
    assert all(later.startswith(earlier) and len(later) > len(earlier) for earlier, later in zip(growing, growing[1:]))
    assert page.locator("#raw textarea").input_value() == growing[-1], "the whole text, as it was streamed"
    expect(page.locator("#thinking")).to_be_visible()  # what the model writes inside <think> (the tiny one: nothing)
    assert page.locator("#answer textarea").input_value() in app.EXAMPLES[0][2]
    assert page.locator("#probabilities").inner_text().count("%") == len(app.EXAMPLES[0][2])
    page.close()


def test_stop_ends_the_answer_and_the_next_question_is_answered(compare_served):
    """Stop while the first of two models is thinking (up to 1024 tokens): generation ends, nothing goes to the
    history, and the model is free: the next question is answered by both."""
    page = open_page(compare_served)
    stop = page.locator("#stop-button")
    expect(stop).to_be_disabled()
    page.locator("#think label").click()
    page.locator("#answer-button").click()
    expect(page.locator("#raw textarea")).not_to_have_value("", timeout=ANSWERED)  # it is writing
    stop.click()
    expect(page.locator("#status")).to_contain_text("Stopped.", timeout=30_000)
    expect(stop).to_be_disabled()
    answers = [page.locator(f"#answer{suffix} textarea").input_value() for suffix in ("", "-b")]
    assert "(stopped)" in answers
    assert history_rows(page) == 0
    page.locator("#think label").click()  # answer mode: 256 tokens each
    answer_and_wait(page, lambda: page.locator("#answer-button").click())
    expect(page.locator("#status")).to_contain_text("Answered: A · ")
    for suffix in ("", "-b"):
        assert page.locator(f"#answer{suffix} textarea").input_value() in app.EXAMPLES[0][2]
    page.close()


def test_two_models_side_by_side_on_a_long_clip(compare_served, tmp_path):
    """The 40 s example with two models: both answers, probabilities, text and windows next to each other, the line
    over them saying whether they agree (and the answers marked where they do not); the history has both."""
    page = open_page(compare_served)
    load_example(page, 5)
    answer_and_wait(page, lambda: page.locator("#answer-button").click())
    first, second = (page.locator(f"#answer{suffix} textarea").input_value() for suffix in ("", "-b"))
    options = app.EXAMPLES[5][2]
    assert first in options and second in options
    agreement = page.locator("#agreement")
    if first == second:
        expect(agreement).to_have_class(re.compile(r"\bagree\b"))
        expect(agreement).to_contain_text(f"Both models answer “{first}”")
    else:
        expect(agreement).to_have_class(re.compile(r"\bdisagree\b"))
        expect(agreement).to_contain_text(f"answers “{first}”")
        expect(agreement).to_contain_text(f"answers “{second}”")
        expect(page.locator("#answer-b")).to_have_class(re.compile(r"\bdisagree\b"))
    for suffix, title in (("", "A · "), ("-b", "B · ")):
        expect(page.locator(f"#title{suffix}")).to_contain_text(title)
        expect(window_rows(page, suffix)).to_have_count(3)  # two windows and the whole clip
        expect(page.locator(f"#plot{suffix} img")).to_be_visible()
        assert page.locator(f"#probabilities{suffix}").inner_text().count("%") == len(options)
    shot(page, "screenshot_compare.png", tmp_path, element=page.locator("#results"))
    [row] = download(page, ".csv", tmp_path)
    assert list(row) == app.HISTORY_COLUMNS + app.COMPARE_COLUMNS
    assert (row["answer"], row["compare answer"]) == (first, second)
    assert row["agree"] == ("yes" if first == second else "no")
    assert row["model"] != row["compare model"]
    page.close()


def test_long_clip_window_table_and_plot(served, tmp_path):
    """A 90 s rising tone, asked how the pitch changes: four 30 s windows (0-30, 25-55, 50-80, 60-90 s), each with
    its answer and probabilities in the table, then the whole clip's; and the plot of each option's probability over
    the clip."""
    clip = tmp_path / "sweep_90s.ogg"
    subprocess.run(["sox", "-n", "-r", "16000", str(clip), "synth", "90", "sine", "200-2000", "vol", "0.3"], check=True)
    page = open_page(served)
    upload(page, clip)
    _, question, options = app.EXAMPLES[3]
    page.locator("#question textarea").fill(question)
    page.locator("#options textarea").fill("\n".join(options))
    answer_and_wait(page, lambda: page.locator("#answer-button").click())
    expect(window_rows(page)).to_have_text(["0–30 s", "25–55 s", "50–80 s", "60–90 s", "whole clip (mean)"])
    whole_clip = page.locator("#windows [role=gridcell][data-row='4'][data-col='1']")
    expect(whole_clip).to_have_text(page.locator("#answer textarea").input_value())
    expect(page.locator("#plot img")).to_be_visible()
    expect(page.locator("#note")).to_contain_text("answered in 4 windows of 30 s")
    expect(page.locator("#details")).to_contain_text("the highest mean probability over the clip's 30 s windows")
    shot(page, "screenshot_windows.png", tmp_path, element=page.locator("#results"))
    page.close()


def test_microphone_recording_is_answered(served, tmp_path):
    """Record from the microphone (Chromium's fake one, playing a spoken sentence), then answer it: the recording
    holds sound, and the history names it."""
    page = open_page(served)
    audio = page.locator("#audio")
    audio.locator("button[aria-label='Clear']").first.click()
    audio.locator("button[aria-label='Record audio']").click()
    audio.get_by_role("button", name="Record", exact=True).click()
    expect(audio.locator("button.stop-button")).to_be_visible()
    page.wait_for_timeout(1_500)  # the length of the recording
    audio.locator("button.stop-button").click()
    link = audio.locator("[data-testid=download-link]")
    expect(link).to_have_attribute("href", re.compile(r"\.wav$"))
    recording = tmp_path / "recording.wav"
    recording.write_bytes(page.request.get(link.get_attribute("href")).body())
    samples = aqa.load_audio(recording)
    assert len(samples) > aqa.SAMPLE_RATE // 2 and float(np.sqrt(np.mean(samples**2))) > 0.01, "sound, not silence"
    answer_and_wait(page, lambda: page.locator("#answer-button").click())
    expect(history_row(page, 0).nth(2)).to_have_text("recording-1.wav")
    assert page.locator("#answer textarea").input_value() in app.EXAMPLES[0][2]
    page.close()


def shot(page: Page, name: str, folder, full_page: bool = False, element=None) -> None:
    """A screenshot of the page (or of one element), under the size committed pictures may have."""
    path = folder / name
    page.mouse.move(0, 0)  # no hover highlight in the picture
    (element or page).screenshot(path=str(path), **({} if element else {"full_page": full_page}))
    assert 0 < path.stat().st_size < SCREENSHOT_LIMIT
    if os.environ.get("AQA_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(path, app.ASSETS / name)


def download(page: Page, suffix: str, folder) -> list:
    with page.expect_download() as event:
        page.locator(f"#files a[download$='{suffix}']").click()
    path = folder / event.value.suggested_filename
    event.value.save_as(path)
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:  # a raw output may hold line breaks
            return list(csv.DictReader(handle))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
