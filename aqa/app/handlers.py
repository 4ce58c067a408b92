"""What the page's events do. A run is three steps: `run_started` (off the queue, at once: the status line says it is
answering, Stop is enabled, Answer is not), `answer_run` (in the models' queue: each model's text streams into its
panel, then its answer) and `run_finished` (off the queue, however the run ended: Answer back, Stop off). The status
and the buttons so never wait on a message streamed with the text."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import gradio as gr

import aqa
from aqa.app.checks import check_inputs, clip_path, options_from_text
from aqa.app.history import (
    COMPARE_COLUMNS,
    HISTORY_COLUMNS,
    History,
    compact_rows,
    history_record,
    judge,
    table_rows,
    write_history,
)
from aqa.app.housekeeping import Cache
from aqa.app.layout import ANSWER, ANSWERING, Parts
from aqa.app.settings import ASSETS, EXAMPLES, AppSettings
from aqa.app.showing import (
    STOPPED,
    agreement,
    answered_line,
    answering_line,
    judge_panel,
    panel_cleared,
    panel_result,
    panel_text,
    results_look,
    status_line,
    status_problems,
)
from aqa.app.slot import RequestClock, StreamFn, decoding_options, streamed, was_cut_short
from aqa.audio import SAMPLE_RATE

STOPPED_BEFORE = "**Stopped** before the models began; nothing is added to the history."


class PageState:
    """One page's own state (a gr.State value): its history, how often its inputs changed, and its Stop.

    A plain class, not a dataclass: Gradio would serialise a dataclass State value into the page's config."""

    def __init__(self):
        self.history = History()
        self.edits = 0  # how many times the inputs were changed: results of earlier inputs are shown dimmed
        self.stop = threading.Event()  # the run under way stops when this is set (each run gets a fresh one)
        self.stop_asked = False  # Stop was pressed since the last run began (maybe while it waited in the queue)

    def __deepcopy__(self, memo) -> PageState:  # Gradio copies a State's first value for each page; a lock cannot be
        return PageState()


class Handlers:
    """The page's event handlers, around loaded models, their device functions and the app's files."""

    def __init__(
        self,
        models: Sequence[aqa.AQAModel],
        labels: Sequence[str],
        streams: Sequence[StreamFn],
        settings: AppSettings,
        cache: Cache,
        parts: Parts,
    ):
        self.models, self.labels, self.streams = list(models), list(labels), list(streams)
        self.settings, self.cache, self.parts = settings, cache, parts
        self.columns = HISTORY_COLUMNS + (COMPARE_COLUMNS if len(models) > 1 else [])

    # --- a run ---------------------------------------------------------------------------------------------------

    def run_started(self, state: PageState) -> dict:
        state.stop_asked = False
        parts = self.parts
        return {
            parts.status: status_line(answering_line(self.labels)),
            parts.stop_button: gr.Button(interactive=True),
            parts.answer_button: gr.Button(ANSWERING, interactive=False),
        }

    def run_finished(self) -> dict:
        return {
            self.parts.answer_button: gr.Button(ANSWER, interactive=True),
            self.parts.stop_button: gr.Button(interactive=False),
        }

    def answer_run(self, audio, question, options_text, think, state: PageState, request: gr.Request):
        """Stream each model's text into its panel, then its answer; the history gets the question once every model
        has answered. Stop ends the model's generation at its next token; problems go to the status line, and the
        page keeps what it shows."""
        parts, clock = self.parts, RequestClock(self.settings.time_limit)
        state.stop = stop = threading.Event()
        if state.stop_asked:  # pressed while this run waited for the models
            yield {parts.status: status_line(STOPPED_BEFORE)}
            return
        edits = state.edits
        options = options_from_text(options_text) if isinstance(options_text, str | None) else options_text
        problems, samples = check_inputs(self.settings, audio, question, options)
        if not isinstance(think, bool):
            problems.append(f"thinking mode must be true or false, not {think!r:.40}")
        if problems:
            yield {parts.status: status_problems(problems)}
            return
        seconds = len(samples) / SAMPLE_RATE
        decodings = [decoding_options(self.settings, think, seconds, model.heard_seconds) for model in self.models]
        cleared = {key: value for panel in parts.panels for key, value in panel_cleared(panel, think).items()}
        yield {parts.results: results_look(stale=False), parts.agreement: gr.Markdown(visible=False), **cleared}
        answered = []
        for panel, stream, decoding in zip(parts.panels, self.streams, decodings):
            try:
                pieces = stream(samples, question, options, decoding, clock.left())
                result = yield from streamed(pieces, stop, lambda text, panel=panel: panel_text(panel, text))
            except gr.Error as error:
                yield {parts.status: status_problems([error.message])}
                return
            if result is None:
                yield {parts.status: status_line(STOPPED), panel.answer: "(stopped)"}
                return
            answered.append(result)
            yield panel_result(panel, result)
        history, path = state.history, clip_path(audio)
        with history.lock:
            record = history.add(
                history_record(self.models, decodings[0], history.clip_name(path), path, question, options, answered)
            )
            self.cache.hold(path)
            files = self.history_files(history, request)
        cut = any(was_cut_short(result) for result in answered)
        shown = {
            parts.status: status_line(
                answered_line(self.labels, answered, clock.elapsed(), self.settings.time_limit, cut)
            ),
            parts.results: results_look(stale=state.edits != edits),  # the inputs may have changed while it answered
            **self.history_shown(history, files),
            **dict(zip(self.judge_fields, judge_panel(record))),
        }
        if len(answered) > 1:
            shown[parts.agreement] = agreement(self.labels, answered)
            disagree = ["answer-box", "disagree"] if answered[0].answer != answered[1].answer else ["answer-box"]
            shown |= {panel.answer: gr.Textbox(elem_classes=disagree) for panel in parts.panels}
        yield shown

    def stop_clicked(self, state: PageState):
        state.stop_asked = True
        state.stop.set()
        return gr.Button(interactive=False)

    # --- the inputs ----------------------------------------------------------------------------------------------

    def inputs_edited(self, state: PageState):
        state.edits += 1
        return results_look(stale=True)

    def example_clicked(self, index: int, state: PageState) -> tuple:
        """Values for: question, options (one per line), audio, the results' look."""
        clip, question, options = EXAMPLES[index]
        state.edits += 1
        return question, "\n".join(options), str(ASSETS / clip), results_look(stale=True)

    # --- the history ---------------------------------------------------------------------------------------------

    @property
    def judge_fields(self) -> list:
        return [self.parts.judged, self.parts.judging, self.parts.expected, self.parts.comment]

    def row_selected(self, state: PageState, event: gr.SelectData):
        """The row clicked, by its "#" (the first cell, in both tables): an answer arriving meanwhile moves the rows,
        not the numbers."""
        number = event.row_value[0] if event.row_value else None
        with state.history.lock:
            return judge_panel(state.history.find(number))

    def expected_picked(self, number, expected, state: PageState, request: gr.Request):
        """The expected answer of the row the page shows (its number comes from the page: an answer arriving
        meanwhile moves the panel on, not this judgement). The page's value is taken as sent, not checked against
        the choices the radio shows by the time it arrives: judging another row may have changed them already."""
        return self.judgement_saved(number, state, request, expected=expected)

    def comment_saved(self, number, comment, state: PageState, request: gr.Request):
        """The comment of the row the page shows, saved alone: the expected answer was saved when it was picked."""
        return self.judgement_saved(number, state, request, comment=comment)

    def judgement_saved(self, number, state: PageState, request: gr.Request, **judgement) -> tuple:
        history = state.history
        with history.lock:
            record = history.find(number)
            if record is None or not all(isinstance(value, str | None) for value in judgement.values()):
                return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            judge(
                record,
                judgement.get("expected", record["expected"]),
                judgement.get("comment", record["comment"]),
            )
            files = self.history_files(history, request)
            return tuple(self.history_shown(history, files).values())

    def history_files(self, history: History, request: gr.Request) -> list[str] | None:
        """The history's files, written again; None when the disk quota has no room (the page keeps the last)."""
        stem = f"aqa-history-{(request.session_hash or 'page')[:8]}"
        return write_history(history, self.cache.history_dir, stem, self.columns, room=self.cache.room)

    def history_shown(self, history: History, files: list[str] | None) -> dict:
        """The two tables and the download buttons: what changes on the page when the history does."""
        parts = self.parts
        shown = {parts.table: table_rows(history), parts.compact: compact_rows(history)}
        if files is None:
            return shown | {parts.downloads: gr.skip(), parts.csv_file: gr.skip(), parts.jsonl_file: gr.skip()}
        csv_path, jsonl_path = files
        return shown | {
            parts.downloads: gr.Row(visible=True),
            parts.csv_file: gr.DownloadButton(value=csv_path),
            parts.jsonl_file: gr.DownloadButton(value=jsonl_path),
        }

    @property
    def history_outputs(self) -> list:
        parts = self.parts
        return [parts.table, parts.compact, parts.downloads, parts.csv_file, parts.jsonl_file]
