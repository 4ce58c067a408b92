"""The page's components, where they sit, and the style and keys that go with them. On a wide screen the inputs and
the results sit side by side, so that the answer, its probabilities and the text being written are in view while a
run streams; on a phone everything stacks, the results right under the Answer button. Examples and the history
follow below."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import gradio as gr

from aqa.app.history import COMPACT_COLUMNS, TABLE_COLUMNS
from aqa.app.settings import ASSETS, EXAMPLES
from aqa.app.showing import READY, Panel

PHONE = 640  # px: narrower screens get the stacked page and the compact history table
CSS = f"""
.answer-box textarea {{font-size: 1.6rem; font-weight: 600}}
.answer-box.disagree textarea {{color: var(--error-text-color, #b91c1c)}}
#status {{display: flex !important; flex-direction: column; overflow: visible !important; min-height: 2.6rem}}
#status.problem {{border-left: 4px solid var(--error-border-color, #ef4444); padding-left: 0.6rem}}
/* The queue position Gradio shows while a run waits: under the status line, readable, not clipped or covered. */
#status [data-testid=status-tracker] {{order: 1; position: static !important; padding: 0 !important;
  justify-content: flex-start !important}}
#status .progress-text {{position: static !important; transform: none !important; font-size: var(--text-md)}}
#agreement.disagree {{border-left: 4px solid var(--error-border-color, #ef4444); padding-left: 0.6rem}}
#agreement.agree {{border-left: 4px solid var(--color-green-500, #22c55e); padding-left: 0.6rem}}
#results {{transition: opacity 0.2s}}
#results.stale {{opacity: 0.4}}
#examples table {{table-layout: fixed; width: 100%}}
#examples th, #examples td, #examples td * {{white-space: normal !important; overflow-wrap: anywhere; text-align: left}}
/* The tables are read-only (a click on the history picks a row to judge): no cell outline, no cell buttons. */
.aqa-table .cell-selected {{box-shadow: none !important}}
.aqa-table .selection-button {{display: none !important}}
.aqa-table [role=gridcell] span {{overflow-wrap: anywhere; font-family: var(--font)}}
#history [data-col='6'] span {{white-space: nowrap}}
@media (max-width: {PHONE}px) {{ #history {{display: none !important}} }}
@media (min-width: {PHONE + 1}px) {{ #history-compact {{display: none !important}} }}
"""
SHOW_INPUTS = "() => document.querySelector('#question')?.scrollIntoView({block: 'center'})"
# A run begins: the status line (with room under it for the queue position) and the answer box come on screen,
# scrolled as little as can be; wherever the page was (the examples, the history), and on a phone too.
SHOW_RESULTS = """
() => {
  const status = document.querySelector('#status')?.getBoundingClientRect();
  const answer = document.querySelector('#answer')?.getBoundingClientRect();
  if (!status || !answer) return;
  const top = Math.min(status.top, answer.top), bottom = Math.max(status.bottom + 48, answer.bottom);
  if (top >= 0 && bottom <= window.innerHeight) return;
  const below = bottom - window.innerHeight;
  window.scrollBy({top: below > 0 && top - below >= 0 ? below : top - 8, behavior: 'instant'});
}
"""
# Ctrl+Enter (Cmd+Enter on a Mac) answers from anywhere on the page; Enter in the one-line question box answers too.
KEYS = """
() => document.addEventListener("keydown", (event) => {
  // The question box answers on its own Enter, Ctrl held or not: answer once, not twice.
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.target.closest?.("#question")) {
    event.preventDefault();
    document.activeElement?.blur?.();  // a comment being written is saved when its box is left
    document.querySelector("#answer-button")?.click();
  }
})
"""
ANSWER, ANSWERING = "Answer", "Answering …"


@dataclass(frozen=True)
class Parts:
    """The page's components that events read or write."""

    audio: gr.Audio
    examples: gr.Dataset
    question: gr.Textbox
    options: gr.Textbox
    think: gr.Checkbox
    answer_button: gr.Button
    stop_button: gr.Button
    status: gr.Markdown
    results: gr.Column
    agreement: gr.Markdown
    panels: list[Panel]
    state: gr.State  # the page's own: its history, and the run under way
    table: gr.Dataframe  # the history, every column (wide screens)
    compact: gr.Dataframe  # the history, COMPACT_COLUMNS (phones)
    judged: gr.Number  # the "#" of the row being judged
    judging: gr.Markdown
    expected: gr.Radio
    comment: gr.Textbox
    downloads: gr.Row
    csv_file: gr.DownloadButton
    jsonl_file: gr.DownloadButton


def example_html(clip: str, question: str, options: Sequence[str]) -> str:
    return f"<b>{html.escape(clip)}</b> · {html.escape(question)}<br>{html.escape(' | '.join(options))}"


def layout_page(titles: Sequence[str | None], new_state) -> Parts:
    """Every component, in page order; `titles` names each model's panel (None for a single model) and `new_state`
    is the page state's first value."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=320):
            audio, question, options, think, answer_button, stop_button, status = layout_inputs()
        with gr.Column(scale=7, min_width=320, elem_id="results") as results:
            agreement = gr.Markdown(visible=False, elem_id="agreement")
            with gr.Row(equal_height=False):
                panels = []
                for suffix, title in zip(("", "-b"), titles):
                    with gr.Column(min_width=300):
                        panels.append(layout_panel(suffix, title))
    examples = gr.Dataset(
        components=["html"],  # shown whole: a textbox preview cuts its text at 60 characters
        headers=["Examples: click one to load its clip, question and options"],
        samples=[[example_html(*example)] for example in EXAMPLES],
        type="index",
        layout="table",
        samples_per_page=len(EXAMPLES),
        show_label=False,
        elem_id="examples",
    )
    history = layout_history(new_state)
    return Parts(
        audio, examples, question, options, think, answer_button, stop_button, status, results, agreement, panels,
        *history,
    )  # fmt: skip


def layout_inputs() -> tuple:
    """The clip, the question and its options; the page opens with the first example loaded, so that Answer answers
    at once."""
    clip, question_text, option_list = EXAMPLES[0]
    audio = gr.Audio(
        value=str(ASSETS / clip), sources=["upload", "microphone"], type="filepath", label="Audio", elem_id="audio"
    )
    question = gr.Textbox(
        value=question_text,
        label="Question",
        lines=1,
        max_lines=4,
        elem_id="question",
        placeholder="What is the sound?",
    )
    options = gr.Textbox(
        value="\n".join(option_list),
        label="Options, one per line",
        lines=4,
        max_lines=12,
        elem_id="options",
        placeholder="Dog\nCat\nCar\nRain",
    )
    think = gr.Checkbox(
        label="Thinking mode (<think> before <answer>; the released model answers directly)", elem_id="think"
    )
    with gr.Row():
        answer_button = gr.Button(ANSWER, variant="primary", elem_id="answer-button", scale=3, min_width=120)
        stop_button = gr.Button(  # while a question is answered: ends it, and the model is free
            "Stop", variant="stop", interactive=False, elem_id="stop-button", scale=1, min_width=80
        )
    status = gr.Markdown(READY, elem_id="status")
    return audio, question, options, think, answer_button, stop_button, status


def layout_panel(suffix: str, title: str | None) -> Panel:
    """One model's results; the first panel's elements are named #answer, #raw, ..., the second's #answer-b, ..."""
    if title:
        gr.Markdown(f"### {title}", elem_id=f"title{suffix}")
    with gr.Row(equal_height=False):  # side by side in a wide panel, stacked in a narrow one (two models, a phone)
        with gr.Column(min_width=240):
            answer = gr.Textbox(
                label="Answer", interactive=False, elem_id=f"answer{suffix}", elem_classes=["answer-box"]
            )
            note = gr.Markdown(visible=False, elem_id=f"note{suffix}")
        with gr.Column(min_width=240):
            probabilities = gr.Label(label="Option probabilities", show_heading=False, elem_id=f"probabilities{suffix}")
    details = gr.Markdown(elem_id=f"details{suffix}")
    raw = gr.Textbox(
        label="Model output, as it is written", interactive=False, lines=3, max_lines=8, elem_id=f"raw{suffix}"
    )
    thinking = gr.Textbox(
        label="Thinking, as it is written",
        interactive=False,
        lines=3,
        max_lines=8,
        visible=False,
        elem_id=f"thinking{suffix}",
    )
    windows = gr.Dataframe(
        label="Window by window",
        interactive=False,
        wrap=True,
        visible=False,
        column_widths=["22%", "26%", "52%"],
        elem_id=f"windows{suffix}",
        elem_classes=["aqa-table"],
    )
    plot = gr.Plot(show_label=False, visible=False, format="png", elem_id=f"plot{suffix}")  # titled in the figure
    return Panel(answer, probabilities, note, details, raw, thinking, windows, plot)


def layout_history(new_state) -> tuple:
    state = gr.State(new_state)  # each page gets its own (a copy of this one)
    with gr.Accordion("History of this page, newest first: click a row to judge it", open=True):
        table = gr.Dataframe(
            headers=TABLE_COLUMNS,
            interactive=False,
            wrap=True,
            column_widths=["40px", "86px", "160px", "20%", "14%", "120px", "92px", "100px", "76px", "10%"],
            max_height=420,
            elem_id="history",
            elem_classes=["aqa-table"],
        )
        compact = gr.Dataframe(
            headers=COMPACT_COLUMNS,
            interactive=False,
            wrap=True,
            column_widths=["11%", "49%", "28%", "12%"],
            max_height=420,
            elem_id="history-compact",
            elem_classes=["aqa-table"],
        )
        judged = gr.Number(visible=False, precision=0)
        judging = gr.Markdown("Answer a question, then judge it here.", elem_id="judging")
        with gr.Row():
            expected = gr.Radio(choices=[], label="Expected answer", elem_id="expected")
            comment = gr.Textbox(
                label="Comment (saved when you press Enter or leave the box)", lines=1, elem_id="comment"
            )
        with gr.Row(visible=False) as downloads:  # until there is a history
            csv_file = gr.DownloadButton("Download the history (CSV)", elem_id="download-csv", size="sm")
            jsonl_file = gr.DownloadButton("Download the history (JSON Lines)", elem_id="download-jsonl", size="sm")
    return state, table, compact, judged, judging, expected, comment, downloads, csv_file, jsonl_file
