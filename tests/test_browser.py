"""The app in a real headless Chromium (Debian's, driven by Playwright), as a tester uses it: examples, typed options,
keyboard, errors that keep the page, dimmed stale results, judging, and the downloaded history.

Set AQA_UPDATE_SCREENSHOT=1 to also write the run's screenshots to assets/ (the README shows them): desktop
(screenshot.png) and phone width (screenshot_phone.png).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import replace

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from test_app import SETTINGS, running_app

import app
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
]
CLIP = app.ASSETS / "speech_man.ogg"
QUESTION = "Based on the given audio, identify the source of the speaking voice."
SCREENSHOT_LIMIT = 300_000  # bytes: they are committed for the README
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
ANSWERED = 120_000  # ms to wait for an answer (the first one warms the model up)
HISTORY_ROWS = "#history [role=gridcell][data-col='0']"  # one per row of the history table
FRESH, STALE = re.compile(r"\bfresh\b"), re.compile(r"\bstale\b")


@pytest.fixture(scope="module")
def served(tiny_model) -> Iterator[tuple[Browser, str]]:
    assert shutil.which(CHROMIUM), "the browser test needs Debian's chromium (apt-get install chromium)"
    settings = replace(SETTINGS, limits=Limits())  # the page as served by default
    with running_app(tiny_model, settings) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser, url
        browser.close()


def open_page(served, viewport=DESKTOP) -> Page:
    """A fresh page (its own history) on the app."""
    browser, url = served
    page = browser.new_page(viewport=viewport, accept_downloads=True)
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
    page.locator("#examples tbody tr").nth(index).click()
    expect(page.locator("#question textarea")).to_have_value(question)
    expect(page.locator("#options textarea")).to_have_value("\n".join(options))
    expect(page.locator("#audio [data-testid=download-link]")).to_have_attribute("href", re.compile(f"/{clip}$"))


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
    page.locator("#audio input[type=file]").set_input_files(str(CLIP))
    options = page.locator("#options textarea")
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


def shot(page: Page, name: str, folder, full_page: bool = False) -> None:
    path = folder / name
    page.mouse.move(0, 0)  # no hover highlight in the picture
    page.screenshot(path=str(path), full_page=full_page)
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
