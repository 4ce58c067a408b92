"""The Blocks: the layout, the page's handlers and the API wired together around loaded models."""

from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr

import aqa
from aqa.app.admission import AppBlocks
from aqa.app.api import add_api
from aqa.app.handlers import Handlers, PageState
from aqa.app.housekeeping import Cache
from aqa.app.layout import SHOW_INPUTS, SHOW_RESULTS, layout_page
from aqa.app.settings import AppSettings
from aqa.app.showing import model_labels, page_header
from aqa.app.slot import device_functions

# Events the page fires for itself: not API endpoints (`/answer` is), and taking the page's text and state.
PAGE = {"api_visibility": "private"}
# Events that never wait in the models' queue: they answer at once and show no progress.
AT_ONCE = {"queue": False, "show_progress": "hidden", **PAGE}


def build_demo(model: aqa.AQAModel, settings: AppSettings = AppSettings(), compare: aqa.AQAModel | None = None):
    """The app around an already loaded model (and a second one to compare it with); `launching.launch(demo,
    settings)` serves it. Its files go to Gradio's cache folder (`demo.cache`)."""
    models = [model] if compare is None else [model, compare]
    labels = model_labels(models)
    lock = threading.Lock()  # one question at a time on the models, whichever event asks
    answerers, streams = zip(*(device_functions(each, lock, settings) for each in models))
    cache = Cache(Path(gr.utils.get_upload_folder()), settings)
    with AppBlocks(title="R1-AQA: audio question answering") as demo:
        gr.Markdown(page_header(models, labels, settings), elem_id="header")
        parts = layout_page(labels if compare is not None else [None], PageState())
        handlers = Handlers(models, labels, streams, settings, cache, parts)
        wire(handlers)
        add_api(models, answerers, streams, settings)
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=1)
    demo.cache = cache  # for launch(): the housekeeping and the request guard
    return demo


def wire(handlers: Handlers) -> None:
    parts = handlers.parts
    # A run: Answer, Enter in the question, or Shift/Ctrl+Enter in the options (one event, so a second press while a
    # run is under way is not queued behind it). The status line shows the run's place in the queue while it waits.
    triggers = [parts.answer_button.click, parts.question.submit, parts.options.submit]
    gr.on(triggers, None, js=SHOW_RESULTS, **AT_ONCE)
    panels = [component for panel in parts.panels for component in panel.components()]
    run_outputs = [parts.status, parts.results, parts.agreement, *handlers.history_outputs, *handlers.judge_fields]
    gr.on(
        triggers, handlers.run_started, parts.state, [parts.status, parts.stop_button, parts.answer_button], **AT_ONCE
    ).then(
        handlers.answer_run,
        [parts.audio, parts.question, parts.options, parts.think, parts.state],
        run_outputs + panels,
        show_progress="minimal",
        show_progress_on=[parts.status],
        concurrency_id="model",
        concurrency_limit=1,
        preprocess=False,  # every field as sent, checked by the handler (aqa.app.checks), none converted first
        **PAGE,
    ).then(handlers.run_finished, None, [parts.answer_button, parts.stop_button], **AT_ONCE)
    parts.stop_button.click(handlers.stop_clicked, parts.state, parts.stop_button, **AT_ONCE)

    # Results of other inputs are dimmed, not hidden. A text box's `input` misses pasting with the mouse, so its
    # `change` counts; a clip's `change` also fires late, once the browser has decoded it (and could dim a fresh
    # result), so only the user's own actions on it count.
    audio, question, options, think = parts.audio, parts.question, parts.options, parts.think
    for edited in (question.change, options.change, think.change, audio.upload, audio.stop_recording, audio.clear):
        edited(handlers.inputs_edited, parts.state, parts.results, **AT_ONCE)
    parts.examples.click(
        handlers.example_clicked, [parts.examples, parts.state], [question, options, audio, parts.results], **AT_ONCE
    ).then(None, js=SHOW_INPUTS, **PAGE)  # back to the question, however far down the list

    # Judging: a row of either table picks the record; the expected answer is saved when picked, the comment on
    # Enter or when its box is left. Each sends the row's number with it and nothing else, so that moving to
    # another row meanwhile cannot mix them up; `preprocess=False` takes the picked answer as sent (see
    # Handlers.expected_picked).
    for table in (parts.table, parts.compact):
        table.select(handlers.row_selected, parts.state, handlers.judge_fields, **AT_ONCE)
    parts.expected.input(
        handlers.expected_picked,
        [parts.judged, parts.expected, parts.state],
        handlers.history_outputs,
        preprocess=False,
        **AT_ONCE,
    )
    for trigger in (parts.comment.blur, parts.comment.submit):
        trigger(
            handlers.comment_saved,
            [parts.judged, parts.comment, parts.state],
            handlers.history_outputs,
            preprocess=False,
            **AT_ONCE,
        )
