"""The app in a real headless Chromium (Debian's, driven by Playwright): upload, ask, edit options, answer, history.

Set AQA_UPDATE_SCREENSHOT=1 to also write the run's screenshot to assets/screenshot.png (the one in the README).
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from test_app import running_app

import app

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
OPTIONS = ["Man", "Woman", "Child"]
SCREENSHOT_LIMIT = 300_000  # bytes: it is committed for the README


@pytest.fixture(scope="module")
def page(tiny_model) -> Iterator[Page]:
    assert shutil.which(CHROMIUM), "the browser test needs Debian's chromium (apt-get install chromium)"
    with running_app(tiny_model) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 860})
        # Nothing but the app: the theme's web fonts and anything else from outside are refused, not waited for.
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
        page.goto(url)
        page.wait_for_selector("#answer-button", timeout=60_000)
        yield page
        browser.close()


def test_empty_form_shows_an_error_message(page):
    page.locator("#answer-button").click()
    expect(page.get_by_text("the question is empty")).to_be_visible(timeout=30_000)
    page.locator("[data-testid=toast-close]").first.click()  # as a user would; it would hide the page otherwise
    expect(page.get_by_text("the question is empty")).to_have_count(0)


def test_upload_ask_edit_and_answer(page, tmp_path):
    page.locator("#audio input[type=file]").set_input_files(str(CLIP))
    page.locator("#question textarea").fill("Based on the given audio, identify the source of the speaking voice.")
    cells = page.locator("#options [data-testid^=cell-]")
    expect(cells).to_have_count(app.OPTION_ROWS)
    for row, option in enumerate(OPTIONS):  # three options typed into the table; its fourth row stays empty
        edit_cell(cells.nth(row), option)
    edit_cell(cells.nth(1), "Woman speaking")  # and one changed
    options = ["Man", "Woman speaking", "Child"]
    expect(cells.nth(1)).to_contain_text("Woman speaking")

    page.locator("#answer-button").click()
    answer = page.locator("#answer textarea")
    expect(answer).not_to_have_value("", timeout=120_000)
    assert answer.input_value() in options
    probabilities = page.locator("#probabilities")
    for option in options:
        expect(probabilities).to_contain_text(option)
    assert probabilities.inner_text().count("%") == len(options)
    expect(page.locator("#details")).to_contain_text("s (audio")
    expect(page.locator("#history")).to_contain_text(CLIP.name)

    shot = tmp_path / "screenshot.png"
    page.screenshot(path=str(shot))
    assert 0 < shot.stat().st_size < SCREENSHOT_LIMIT
    if os.environ.get("AQA_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, app.ASSETS / "screenshot.png")

    with page.expect_download() as download:
        page.locator("#download").click()
    with open(download.value.path(), newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == app.HISTORY_COLUMNS
    question = page.locator("#question textarea").input_value()
    assert rows[1][:4] == [CLIP.name, question, " | ".join(options), answer.input_value()]


def edit_cell(cell, text: str) -> None:
    """As a user does: double-click the cell, type over its text, press Enter."""
    cell.dblclick()
    editor = cell.locator('textarea[aria-label="Edit cell"]')
    expect(editor).to_be_focused()
    editor.press("ControlOrMeta+a")
    editor.press_sequentially(text)
    editor.press("Enter")
