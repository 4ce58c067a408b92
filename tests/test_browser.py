"""The app in a real headless Chromium (Debian's, driven by Playwright), as a tester uses it, at a desktop's 1280x800
and a phone's 390x844: a page that opens ready, examples, typed options, keyboard, errors that keep the page, dimmed
stale results, the text streaming in with the status and Stop following every run, the queue position, results in
view while they stream, Stop, two models side by side, a long clip window by window, the microphone, judging however
the tester moves between rows, and the downloaded history. The apps run as `python app.py`; over the whole suite
their logs hold no traceback and the pages get no HTTP 500.

Set AQA_UPDATE_SCREENSHOT=1 to also write the run's screenshots to assets/ (the docs show them), each at both sizes:
an answered question, compare mode, a long clip's windows, an input error and a judged history.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

import aqa
from aqa.app.history import COMPARE_COLUMNS, HISTORY_COLUMNS
from aqa.app.settings import ASSETS, EXAMPLES
from aqa.app.showing import PLOT_FONT
from bench.serving import Server, app_server

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
QUESTION = "Based on the given audio, identify the source of the speaking voice."
SCREENSHOT_LIMIT = 300_000  # bytes: they are committed for the docs
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SIZES = pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
ANSWERED = 120_000  # ms to wait for an answer (the first one warms the model up)
FRESH, STALE = re.compile(r"\bfresh\b"), re.compile(r"\bstale\b")
# What the page's results look like, sampled every 40 ms from inside the page: the status line, the buttons, how much
# text each panel has, its answer, and which of the results are wholly on screen.
WATCH = """
() => {
  const find = (selector) => document.querySelector(selector);
  const onScreen = (selector) => {
    const box = find(selector)?.getBoundingClientRect();
    return Boolean(box && box.height > 0 && box.top >= 0 && box.bottom <= innerHeight && box.right <= innerWidth);
  };
  const results = ["#answer", "#probabilities", "#raw", "#answer-b", "#probabilities-b", "#raw-b"];
  window.aqaSeen = [];
  clearInterval(window.aqaWatch);
  window.aqaWatch = setInterval(() => window.aqaSeen.push({
    status: find("#status")?.innerText ?? "",
    stop: !(find("#stop-button")?.disabled ?? true),
    button: find("#answer-button")?.innerText ?? "",
    raw: find("#raw textarea")?.value.length ?? 0,
    answer: find("#answer textarea")?.value ?? "",
    shown: results.filter(onScreen),
  }), 40);
}
"""
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


@dataclass(frozen=True)
class Served:
    browser: Browser
    server: Server
    server_errors: list[str]  # every HTTP 5xx response a page of this server got


def assert_clean(served: Served) -> None:
    """No page got an HTTP 500, and the server logged no traceback and no error."""
    log = served.server.log.read_text(encoding="utf-8", errors="replace")
    assert not served.server_errors, f"HTTP 5xx: {served.server_errors}"
    for sign in ("Traceback", "ERROR", "Exception in ASGI", " 500 "):
        assert sign not in log, f"the server log holds {sign!r}:\n{log[-3000:]}"


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
def served(tiny_model_dir, browser, tmp_path_factory) -> Iterator[Served]:
    """`python app.py` on the tiny checkpoint with the library's caps, 64 new tokens at most, clips up to 120 s."""
    args = ["--model", str(tiny_model_dir), "--device", "cpu", "--max-new-tokens", "64", "--max-seconds", "120"]
    with app_server(args, tmp_path_factory.mktemp("app")) as server:
        served = Served(browser, server, [])
        yield served
    assert_clean(served)


@pytest.fixture(scope="module")
def compare_served(compare_server, browser) -> Iterator[Served]:
    """`python app.py --model TINY --compare TINY2`, with the core's token budgets (256; 1024 in thinking mode: a
    few seconds of text on the CPU, time enough to press Stop)."""
    served = Served(browser, compare_server, [])
    yield served
    assert_clean(served)


def open_page(served: Served, viewport=DESKTOP, record_text: bool = False) -> Page:
    """A fresh page (its own history) on the app; `record_text` keeps every value its text boxes are given."""
    url = served.server.url
    page = served.browser.new_page(viewport=viewport, accept_downloads=True)
    if record_text:
        page.add_init_script(RECORD_TEXT)
    page.on("response", lambda response: response.status >= 500 and served.server_errors.append(response.url))
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


def history(page: Page):
    """The history table on screen: every column on a wide screen, the compact one on a phone."""
    return page.locator("#history:visible, #history-compact:visible")


def history_rows(page: Page) -> int:
    return history(page).locator("[role=gridcell][data-col='0']").count()


def history_row(page: Page, row: int):
    """The cells of a row of the history table on screen (a virtual table: rows are divs of grid cells)."""
    return history(page).locator(f"[role=gridcell][data-row='{row}']")


def history_column(page: Page, name: str) -> int:
    """The index of the column of the history table on screen whose heading holds `name`."""
    headings = history(page).locator("[role=columnheader]").all_inner_texts()
    return next(number for number, heading in enumerate(headings) if name in heading)


def answer_and_wait(page: Page, submit) -> None:
    """Submit (a click or a key) and wait for this answer's history row."""
    rows = history_rows(page)
    submit()
    try:
        expect(history(page).locator("[role=gridcell][data-col='0']")).to_have_count(rows + 1, timeout=ANSWERED)
    except AssertionError:
        raise AssertionError(f"no answer; the status line reads: {status(page)}") from None


def answer(page: Page) -> None:
    answer_and_wait(page, lambda: page.locator("#answer-button").click())


def load_example(page: Page, index: int) -> None:
    """Click an example and wait until its clip, question and options are all in the inputs."""
    clip, question, options = EXAMPLES[index]
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


def status(page: Page) -> str:
    return page.locator("#status").inner_text()


def watch(page: Page) -> None:
    page.evaluate(WATCH)


def wait_for_new_text(page: Page, characters: int = 20) -> None:
    """Until the run begun since `watch` has written `characters` (the text of an earlier run does not count)."""
    try:
        page.wait_for_function(
            """characters => {
              const samples = window.aqaSeen, began = samples.findIndex(sample => sample.answer === "");
              return began >= 0 && samples.slice(began).some(sample => !sample.answer && sample.raw > characters);
            }""",
            arg=characters,
            timeout=ANSWERED,
        )
    except PlaywrightTimeout:
        raise AssertionError(f"no new text; the page last showed {page.evaluate('window.aqaSeen.at(-1)')}") from None


def streaming(page: Page) -> list[dict]:
    """What the page showed since `watch` while the first model's text streamed in: from the run's start (its answer
    box emptied; an earlier run's text may still stand there), the looks with text and no answer yet."""
    samples = page.evaluate("window.aqaSeen")
    began = next((number for number, sample in enumerate(samples) if sample["answer"] == ""), len(samples))
    return [sample for sample in samples[began:] if sample["raw"] > 0 and not sample["answer"]]


def shot(page: Page, name: str, folder, viewport) -> None:
    """A screenshot of what the screen shows, under the size committed pictures may have; `_phone` is added to the
    name at phone width."""
    if viewport == PHONE:
        name = name.replace(".png", "_phone.png")
    path = folder / name
    page.mouse.move(0, 0)  # no hover highlight in the picture
    page.screenshot(path=str(path))
    assert 0 < path.stat().st_size < SCREENSHOT_LIMIT
    if os.environ.get("AQA_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(path, ASSETS / name)


def download(page: Page, suffix: str, folder) -> list:
    """The history file the page offers (".csv" or ".jsonl"), read."""
    button = {".csv": "#download-csv", ".jsonl": "#download-jsonl"}[suffix]
    with page.expect_download() as event:
        page.locator(button).click()
    path = folder / event.value.suggested_filename
    event.value.save_as(path)
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:  # a raw output may hold line breaks
            return list(csv.DictReader(handle))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def scroll_to(page: Page, selector: str) -> None:
    page.locator(selector).evaluate("element => element.scrollIntoView({block: 'start', behavior: 'instant'})")


def queue_place_readable(page: Page) -> str:
    """ "readable" once the queue position on the status line is on screen, inside every box that clips it, and
    clear of the status text (within a few seconds: the line is laid out anew as the run begins); else why not."""
    check = """() => {
      const element = document.querySelector("#status .progress-text");
      const box = element?.getBoundingClientRect();
      if (!box || !box.width || !box.height) return "not shown";
      if (box.top < 0 || box.bottom > innerHeight) return `off screen (${box.top}-${box.bottom} of ${innerHeight})`;
      for (let parent = element.parentElement; parent; parent = parent.parentElement) {
        const style = getComputedStyle(parent);
        if (style.overflowX === "visible" && style.overflowY === "visible") continue;
        const clip = parent.getBoundingClientRect();
        if (box.top < clip.top - 1 || box.bottom > clip.bottom + 1) return `clipped by ${parent.className}`;
      }
      const text = document.querySelector("#status [data-testid=markdown-wrapper]").getBoundingClientRect();
      return box.bottom <= text.top + 1 || box.top >= text.bottom - 1 ? "readable" : "under the status text";
    }"""
    try:
        page.wait_for_function(f"() => ({check})() === 'readable'", timeout=10_000)
    except PlaywrightTimeout:
        return page.evaluate(check)
    return "readable"


# --- the page as it opens, and its inputs ------------------------------------------------------------------------


@SIZES
def test_a_fresh_page_answers_the_loaded_example(served, viewport, tmp_path):
    """The page opens with the first example loaded: Answer answers it at once, with no error anywhere; the answer
    is right there (beside the inputs on a desktop, under the Answer button on a phone), and nothing is wider than
    the screen."""
    page = open_page(served, viewport)
    clip, question, options = EXAMPLES[0]
    expect(page.locator("#question textarea")).to_have_value(question)
    expect(page.locator("#options textarea")).to_have_value("\n".join(options))
    expect(page.locator("#audio [data-testid=download-link]")).to_have_attribute("href", re.compile(f"/{clip}$"))
    answer(page)
    assert page.locator("#answer textarea").input_value() in options
    expect(history_row(page, 0).nth(1 if viewport == PHONE else 2)).to_contain_text(clip)
    expect(page.locator("#status")).to_contain_text("Answered in")
    assert page.get_by_text("Error", exact=True).count() == 0
    if viewport == PHONE:
        scroll_to(page, "#answer-button")
    for element in ("#answer-button", "#status", "#answer", "#probabilities"):
        expect(page.locator(element)).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], "nothing wider than the screen"
    shot(page, "screenshot_answered.png", tmp_path, viewport)
    page.close()


def test_typed_options_are_kept_exactly_and_enter_answers(page, tmp_path):
    """One option per line: typed, pasted, edited, every character is what the app asks; Enter in the question
    answers. The box has no control that could move the options elsewhere."""
    upload(page, ASSETS / EXAMPLES[0][0])
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
    assert [line.strip() for line in options.input_value().splitlines() if line.strip()] == [o.strip() for o in typed]
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
    # A long option makes no tall history row: the table shows its start, the files keep it all.
    assert history_row(page, 0).nth(history_column(page, "options")).bounding_box()["height"] < 100


@SIZES
def test_each_example_loads_what_is_clicked(served, viewport):
    """Every example, clicked in turn: its clip, question and every option are loaded, and the question and the
    Answer button are in view."""
    page = open_page(served, viewport)
    rows = page.locator("#examples tbody tr")
    expect(rows).to_have_count(len(EXAMPLES))
    for index in [*range(len(EXAMPLES)), 0]:  # and back to the first
        clip, question, options = EXAMPLES[index]
        expect(rows.nth(index)).to_contain_text(" | ".join(options))  # all of them, as plain text
        load_example(page, index)
        expect(page.locator("#question")).to_be_in_viewport()
        expect(page.locator("#answer-button")).to_be_in_viewport()
    page.close()


@SIZES
def test_bad_input_keeps_results_and_history_and_lists_every_problem(served, viewport, tmp_path):
    page = open_page(served, viewport)
    load_example(page, 2)
    answer(page)
    answered = page.locator("#answer textarea").input_value()
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
    expect(page.locator("#answer textarea")).to_have_value(answered)
    assert history_rows(page) == 1
    scroll_to(page, "#question")
    expect(page.locator("#status")).to_be_in_viewport()
    shot(page, "screenshot_error.png", tmp_path, viewport)
    page.locator("#think label").click()  # other actions on the page leave the message in place
    expect(page.locator("#status")).to_contain_text("the question is empty")
    # The next run replaces it.
    page.locator("#question textarea").fill("How many beeps?")
    page.locator("#options textarea").fill("Two\nThree")
    answer(page)
    expect(page.locator("#status")).to_contain_text("Answered in")
    expect(page.locator("#results")).to_have_class(FRESH)
    page.close()


def test_ctrl_enter_answers_from_the_options(page):
    load_example(page, 3)
    page.locator("#options textarea").click()
    answer_and_wait(page, lambda: page.keyboard.press("Control+Enter"))
    assert history_rows(page) == 1, "one answer, not two"
    assert page.locator("#options textarea").input_value() == "\n".join(EXAMPLES[3][2]), "no line was added"


# --- a run: the text streaming in, the status line and the buttons -------------------------------------------------


def test_thinking_mode_text_streams_in_before_the_answer(served):
    """Thinking mode, 64 new tokens: the model's text is seen growing, update after update, while the answer box is
    still empty; the answer and the probabilities come with the last update."""
    page = open_page(served, record_text=True)
    page.locator("#think label").click()
    page.evaluate("window.aqaTexts = []")
    answer(page)
    shown = page.evaluate("window.aqaTexts")
    answered_at = next(index for index, (box, text) in enumerate(shown) if box == "answer" and text)
    growing = [text for box, text in shown[:answered_at] if box == "raw" and text]
    assert len(growing) >= 2, f"the text came in {len(growing)} update(s) before the answer"
    assert all(later.startswith(earlier) and len(later) > len(earlier) for earlier, later in zip(growing, growing[1:]))
    assert page.locator("#raw textarea").input_value() == growing[-1], "the whole text, as it was streamed"
    expect(page.locator("#thinking")).to_be_visible()  # what the model writes inside <think> (the tiny one: nothing)
    assert page.locator("#answer textarea").input_value() in EXAMPLES[0][2]
    assert page.locator("#probabilities").inner_text().count("%") == len(EXAMPLES[0][2])
    page.close()


def test_the_status_line_and_stop_follow_every_run(compare_served, tmp_path):
    """Fifteen runs one after the other on a 75 s clip (three windows, two models), after an answered question, each
    stopped once text has come; every fourth begins after a refused one, its error on the status line. In each,
    while the text streams in, the status line says it is answering (no earlier answer, stop or error left up) and
    Stop is enabled."""
    clip = tmp_path / "sweep_75s.ogg"
    subprocess.run(["sox", "-n", "-r", "16000", str(clip), "synth", "75", "sine", "200-2000", "vol", "0.3"], check=True)
    page = open_page(compare_served)
    upload(page, clip)
    answer(page)
    question = page.locator("#question textarea")
    for run in range(15):
        if run % 4 == 3:  # a refused run first: its message must not stay up during the next one
            question.fill("")
            page.locator("#answer-button").click()
            expect(page.locator("#status")).to_contain_text("the question is empty", timeout=30_000)
            question.fill(QUESTION)
        watch(page)
        page.locator("#answer-button").click()
        wait_for_new_text(page)
        looks = streaming(page)
        wrong = [look for look in looks if "answering" not in look["status"].lower() or not look["stop"]]
        assert not wrong, f"run {run}: while text streamed, {len(wrong)} of {len(looks)} looks were {wrong[0]}"
        page.locator("#stop-button").click()
        expect(page.locator("#status")).to_contain_text("Stopped", timeout=60_000)
    page.close()


def test_a_second_press_during_a_run_is_seen_and_changes_nothing(compare_served):
    """While a run is under way the Answer button says so and cannot be pressed; Enter in the question starts no
    second run; once it is over, Answer is back."""
    page = open_page(compare_served)
    page.locator("#think label").click()  # thinking mode: time enough to press again
    page.locator("#answer-button").click()
    expect(page.locator("#raw textarea")).not_to_have_value("", timeout=ANSWERED)
    button = page.locator("#answer-button")
    expect(button).to_be_disabled()
    expect(button).to_contain_text("Answering")
    button.click(force=True)  # as a tester would, twice
    page.locator("#question textarea").press("Enter")
    page.locator("#stop-button").click()
    expect(page.locator("#status")).to_contain_text("Stopped", timeout=30_000)
    expect(button).to_be_enabled()
    expect(button).to_have_text("Answer")
    page.wait_for_timeout(2_000)  # a second run would have begun by now
    assert "Answering" not in status(page) and history_rows(page) == 0
    # The message says where the text that stays is: in the results, which are on screen.
    assert "above" not in status(page) and "stays in the results" in status(page)
    expect(page.locator("#raw")).to_be_in_viewport()
    page.close()


@SIZES
def test_a_waiting_tester_sees_their_place_in_the_queue(compare_served, viewport):
    """While another page's question holds the models, a tester who presses Answer reads their place in the queue
    on the status line: on screen, not clipped, not covered."""
    busy = open_page(compare_served)
    busy.locator("#think label").click()
    busy.locator("#answer-button").click()
    expect(busy.locator("#raw textarea")).not_to_have_value("", timeout=ANSWERED)
    page = open_page(compare_served, viewport)
    page.locator("#answer-button").click()
    place = page.locator("#status").get_by_text(re.compile(r"queue: \d+/\d+"))
    expect(place).to_be_visible(timeout=30_000)
    assert queue_place_readable(page) == "readable"
    busy.locator("#stop-button").click()
    answer_and_wait(page, lambda: None)  # its turn comes
    for opened in (busy, page):
        opened.close()


def test_results_are_on_screen_while_a_run_streams(compare_served):
    """At 1280x800, from the top of the page and from the history at its bottom (Ctrl+Enter), the answer, the
    probabilities and the text being written of both models are on screen while the text streams."""
    page = open_page(compare_served)
    page.locator("#think label").click()
    for start in ("top", "history"):
        if start == "history":
            scroll_to(page, "#judging")
        watch(page)
        if start == "top":
            page.locator("#answer-button").click()
        else:
            page.keyboard.press("Control+Enter")
        wait_for_new_text(page)
        for look in streaming(page):
            assert {"#answer", "#probabilities", "#raw", "#answer-b", "#probabilities-b", "#raw-b"} <= set(
                look["shown"]
            ), f"from the {start}, only {look['shown']} on screen while the text streamed"
        page.locator("#stop-button").click()
        expect(page.locator("#status")).to_contain_text("Stopped", timeout=30_000)
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
    answer(page)
    expect(page.locator("#status")).to_contain_text("Answered: A · ")
    for suffix in ("", "-b"):
        assert page.locator(f"#answer{suffix} textarea").input_value() in EXAMPLES[0][2]
    page.close()


# --- the history: judging, and the files ---------------------------------------------------------------------------


def late(page: Page, text: str, url: str) -> None:
    """Requests that carry `text` reach the server 0.8 s late, as on a slow network: a request sent after them but
    already on its way (its answer too) overtakes them. (A sync route handler that sleeps holds only Playwright's
    side: the page goes on meanwhile.)"""

    def route(handled):
        if not handled.request.url.startswith(url):
            return handled.abort()
        if text in (handled.request.post_data or ""):
            time.sleep(0.8)
        handled.continue_()

    page.unroute("**/*")
    page.route("**/*", route)


@SIZES
def test_judging_keeps_every_judgement_however_the_tester_moves(served, viewport, tmp_path):
    """Two answers (examples 1 and 3). Judge #1: pick an expected answer, type a comment without Enter, click row #2
    (the comment's save arriving after the click's, as on a slow network): #1 keeps both, on the page and in the
    files, and #2 is judged next. No judgement is lost or lands on another row, and nothing fails."""
    page = open_page(served, viewport)
    for index in (0, 2):  # two answers: the newest comes first
        load_example(page, index)
        answer(page)
    question = history_column(page, "question")
    expect(history_row(page, 0).nth(question)).to_contain_text(EXAMPLES[2][1][:20])
    late(page, "deep voice", served.server.url)
    history_row(page, 1).nth(question).click()
    expect(page.locator("#judging")).to_contain_text("Judging #1")
    page.locator("#expected").get_by_text("Woman", exact=True).click()
    comment = page.locator("#comment textarea")
    comment.click()
    comment.press_sequentially("deep voice")
    history_row(page, 0).nth(question).click()  # straight to the other row
    expect(page.locator("#judging")).to_contain_text("Judging #2")
    page.locator("#expected").get_by_text("Three", exact=True).click()
    comment.fill("three beeps")
    comment.press("Enter")
    mark = history_column(page, "✓" if viewport == PHONE else "correct")
    for row in (0, 1):
        expect(history_row(page, row).nth(mark)).to_have_text(re.compile(r"^\s*[✓✗]\s*$"))
    if viewport == DESKTOP:
        expect(history_row(page, 1).nth(history_column(page, "comment"))).to_have_text("deep voice")
        expect(history_row(page, 1).nth(history_column(page, "expected"))).to_have_text("Woman")
    history_row(page, 1).nth(question).click()  # and back: #1 shows what was saved
    expect(page.locator("#comment textarea")).to_have_value("deep voice")
    expect(page.locator("#expected input[value='Woman']")).to_be_checked()
    rows = download(page, ".csv", tmp_path)
    assert [(row["expected"], row["comment"]) for row in rows] == [("Three", "three beeps"), ("Woman", "deep voice")]
    assert [line["expected"] for line in download(page, ".jsonl", tmp_path)] == ["Three", "Woman"]
    page.close()


@SIZES
def test_history_is_judged_and_downloads_with_every_column(served, viewport, tmp_path):
    page = open_page(served, viewport)
    for index in (0, 1):
        load_example(page, index)
        answer(page)
    question = history_column(page, "question")
    history_row(page, 1).nth(question).click()
    expect(page.locator("#judging")).to_contain_text("Judging #1")
    page.locator("#expected").get_by_text("Woman", exact=True).click()
    comment = page.locator("#comment textarea")
    comment.fill("the voice is low; a man")
    comment.press("Enter")
    older = history_row(page, 1)
    expect(older.nth(history_column(page, "✓" if viewport == PHONE else "correct"))).to_have_text(re.compile("[✓✗]"))
    # The table is read-only: a click picks a row, it shows no editing outline or cell buttons.
    outline = "cell => getComputedStyle(cell).boxShadow"
    unclicked = history_row(page, 0).nth(question).evaluate(outline)
    assert older.nth(question).evaluate(outline) == unclicked, "the clicked cell is outlined"
    assert history(page).locator("button.selection-button:visible").count() == 0
    if viewport == DESKTOP:
        expect(older.nth(history_column(page, "comment"))).to_have_text("the voice is low; a man")
        expect(older.nth(history_column(page, "expected"))).to_have_text("Woman")
        clip = history_row(page, 0).nth(history_column(page, "clip"))  # a clip's name is shown whole
        expect(clip).to_have_text(EXAMPLES[1][0])
        assert clip.evaluate("cell => cell.scrollWidth <= cell.clientWidth")
    comment.blur()
    # The downloads stay: they have no button that removes them.
    expect(page.locator("#download-csv")).to_be_visible()
    expect(page.locator("#download-jsonl")).to_be_visible()
    assert page.locator("[aria-label='Remove this file']").count() == 0
    scroll_to(page, "#judging" if viewport == DESKTOP else "#history-compact")
    shot(page, "screenshot_history.png", tmp_path, viewport)
    rows = download(page, ".csv", tmp_path)
    assert list(rows[0]) == HISTORY_COLUMNS
    assert [row["clip"] for row in rows] == [EXAMPLES[1][0], EXAMPLES[0][0]]  # newest first
    judged = rows[1]
    assert (judged["question"], json.loads(judged["options"])) == (QUESTION, EXAMPLES[0][2])
    assert (judged["expected"], judged["comment"]) == ("Woman", "the voice is low; a man")
    assert judged["correct"] == ("yes" if judged["answer"] == "Woman" else "no")
    assert set(json.loads(judged["probabilities"])) == set(EXAMPLES[0][2])
    assert judged["thinking mode"] == "no" and judged["model"] and judged["precision"] == "fp32"
    assert float(judged["clip seconds"]) > 0 and float(judged["seconds"]) > 0
    lines = download(page, ".jsonl", tmp_path)
    assert [line["expected"] for line in lines] == [None, "Woman"]
    page.close()


# --- two models, long clips, the microphone ------------------------------------------------------------------------


@SIZES
def test_two_models_side_by_side_on_a_long_clip(compare_served, viewport, tmp_path):
    """The 40 s example with two models: both answers, probabilities, text and windows next to each other, the line
    over them saying whether they agree (and the answers marked where they do not); the history has both, its
    "top" cell on one line."""
    page = open_page(compare_served, viewport)
    load_example(page, 5)
    answer(page)
    first, second = (page.locator(f"#answer{suffix} textarea").input_value() for suffix in ("", "-b"))
    options = EXAMPLES[5][2]
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
    if viewport == DESKTOP:
        top = history_row(page, 0).nth(history_column(page, "top"))
        expect(top).to_have_text(re.compile(r"^\s*\d+% · \d+%\s*$"))
        line = top.locator("span").first.evaluate("span => parseFloat(getComputedStyle(span).lineHeight)")
        assert top.locator("span").first.bounding_box()["height"] < 1.5 * line, "the two shares on one line"
        expect(page.locator("#answer")).to_be_in_viewport()
    else:
        scroll_to(page, "#agreement")
    shot(page, "screenshot_compare.png", tmp_path, viewport)
    [row] = download(page, ".csv", tmp_path)
    assert list(row) == HISTORY_COLUMNS + COMPARE_COLUMNS
    assert (row["answer"], row["compare answer"]) == (first, second)
    assert row["agree"] == ("yes" if first == second else "no")
    assert row["model"] != row["compare model"]
    page.close()


@pytest.fixture(scope="module")
def families_served(tiny_model_dir, family_dirs, browser, tmp_path_factory) -> Iterator[Served]:
    """`python app.py --model TINY --compare TINY-AF3`: two model families side by side (Qwen2-Audio's architecture,
    which hears 30 s at a time, and Audio Flamingo 3's, which hears 600 s)."""
    args = ["--model", str(tiny_model_dir), "--compare", str(family_dirs["audio-flamingo-3"]), "--device", "cpu"]
    args += ["--max-new-tokens", "16"]
    with app_server(args, tmp_path_factory.mktemp("families-app")) as server:
        served = Served(browser, server, [])
        yield served
    assert_clean(served)


def test_two_model_families_side_by_side(families_served, tmp_path):
    """Two families compared on the page: both answer the 40 s example, the first window by window (it hears 30 s),
    the second in one piece; the header says what each hears, and the history names each model's family."""
    page = open_page(families_served)
    expect(page.locator("#header")).to_contain_text("A hears 30 s at a time, B 600 s")
    load_example(page, 5)
    answer(page)
    options = EXAMPLES[5][2]
    first, second = (page.locator(f"#answer{suffix} textarea").input_value() for suffix in ("", "-b"))
    assert first in options and second in options
    expect(window_rows(page)).to_have_count(3)  # two windows and the whole clip
    expect(window_rows(page, "-b")).to_have_count(0)
    assert page.locator("#probabilities-b").inner_text().count("%") == len(options)
    [row] = download(page, ".csv", tmp_path)
    assert (row["family"], row["compare family"]) == ("qwen2-audio", "audio-flamingo-3")
    assert (row["answer"], row["compare answer"]) == (first, second)
    page.close()


@SIZES
def test_long_clip_window_table_and_plot(served, viewport, tmp_path):
    """A 90 s rising tone, asked how the pitch changes: four 30 s windows (0-30, 25-55, 50-80, 60-90 s), each with
    its answer and every option's probability in the table, then the whole clip's; and the plot of each option's
    probability over the clip. At either width the table shows every option without sideways scrolling and the
    plot's smallest text is at least 9 px on screen."""
    clip = tmp_path / "sweep_90s.ogg"
    subprocess.run(["sox", "-n", "-r", "16000", str(clip), "synth", "90", "sine", "200-2000", "vol", "0.3"], check=True)
    page = open_page(served, viewport)
    upload(page, clip)
    _, question, options = EXAMPLES[3]
    page.locator("#question textarea").fill(question)
    page.locator("#options textarea").fill("\n".join(options))
    answer(page)
    expect(window_rows(page)).to_have_text(["0–30 s", "25–55 s", "50–80 s", "60–90 s", "whole clip (mean)"])
    whole_clip = page.locator("#windows [role=gridcell][data-row='4'][data-col='1']")
    expect(whole_clip).to_have_text(page.locator("#answer textarea").input_value())
    for row in range(5):
        cells = page.locator(f"#windows [role=gridcell][data-row='{row}']").all_inner_texts()
        for option in options:
            assert option in " ".join(cells), f"window row {row} does not show {option!r}"
    grid = page.locator("#windows .virtual-table-viewport")
    assert grid.evaluate("table => table.scrollWidth <= table.clientWidth"), "the window table scrolls sideways"
    plot = page.locator("#plot img")
    expect(plot).to_be_visible()
    scale = plot.evaluate("image => image.clientWidth / image.naturalWidth")
    smallest = min(PLOT_FONT.values()) * 100 / 72  # points to pixels at the figure's 100 dpi
    assert smallest * scale >= 9, f"the plot's smallest text is {smallest * scale:.1f} px on screen"
    expect(page.locator("#note")).to_contain_text("answered in 4 windows of 30 s")
    expect(page.locator("#details")).to_contain_text("the highest mean probability over the clip's windows")
    scroll_to(page, "#windows")
    shot(page, "screenshot_windows.png", tmp_path, viewport)
    page.close()


def test_phone_history_reads_without_sideways_scrolling(served):
    """At 390 px the history shows a compact set of columns: every one on screen, the question readable (a column
    of ~150 px, not two characters) and rows of a few lines, even with long options."""
    page = open_page(served, PHONE)
    for index in (1, 5):
        load_example(page, index)
        answer(page)
    page.locator("#options textarea").fill("\n".join(f"{word} " * 40 for word in ("Rain", "Wind")))
    answer(page)
    grid = history(page).locator(".virtual-table-viewport")
    assert grid.evaluate("grid => grid.scrollWidth <= grid.clientWidth"), "the history scrolls sideways"
    question = history_row(page, 0).nth(history_column(page, "question"))
    assert question.bounding_box()["width"] >= 120
    for row in range(3):
        assert history_row(page, row).first.bounding_box()["height"] <= 120
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
    answer(page)
    expect(history_row(page, 0).nth(2)).to_have_text("recording-1.wav")
    assert page.locator("#answer textarea").input_value() in EXAMPLES[0][2]
    page.close()
