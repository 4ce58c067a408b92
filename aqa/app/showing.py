"""Results as the page shows them: a model's panel filling in, the windows' table and plot, the line over two models'
answers, the status line, the judging panel. Values and component updates only; the components are laid out in
`layout`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import gradio as gr
from matplotlib.figure import Figure

import aqa
from aqa.app.history import ANSWER_SOURCES, COMPARE
from aqa.app.settings import AppSettings
from aqa.parsing import extract_think
from aqa.windows import WINDOW_OVERLAP

READY = "Press **Answer**, or Enter in the question, or Ctrl+Enter anywhere."
STOPPED = (
    "**Stopped.** The model is free for the next question; the text written so far stays in the results, and "
    "nothing is added to the history."
)
# The plot's text sizes, in points at 100 dpi: at a phone's width the picture is drawn at ~0.7 of its size, and the
# smallest of these is still ~10 px there.
PLOT_FONT = {"title": 12, "label": 11, "ticks": 11, "legend": 11}
PLOT_INCHES = (5.0, 3.4)
MARKERS = "osD^vP*X"
DASHES = ["-", "--", "-.", ":"]


@dataclass(frozen=True)
class Panel:
    """One model's results on the page."""

    answer: gr.Textbox
    probabilities: gr.Label
    note: gr.Markdown
    details: gr.Markdown
    raw: gr.Textbox  # the model's text, filled in as it is written
    thinking: gr.Textbox  # the text inside <think>, as it is written (thinking mode only)
    windows: gr.Dataframe  # a long clip's windows: each one's answer and probabilities
    plot: gr.Plot  # each option's probability over the clip, window by window

    def components(self) -> list:
        return [getattr(self, field.name) for field in fields(self)]


def model_labels(models: Sequence[aqa.AQAModel]) -> list[str]:
    """How the page names each model: its checkpoint's folder or hub name, "A ·" and "B ·" before it when two."""
    names = [Path(model.name).name or model.name for model in models]
    if len(set(names)) < len(names):  # the same checkpoint twice, in two precisions, or two folders named alike
        names = [f"{model.name} ({model.precision})" for model in models]
    return names if len(models) == 1 else [f"{letter} · {name}" for letter, name in zip("AB", names)]


def page_header(models: Sequence[aqa.AQAModel], labels: Sequence[str], settings: AppSettings) -> str:
    if len(models) == 1:
        which = f"Model `{models[0].name}` ({models[0].precision} on {models[0].device})."
    else:
        which = "Two models answer each question side by side: " + " and ".join(
            f"{label.split(' · ')[0]} `{model.name}` ({model.precision} on {model.device})"
            for label, model in zip(labels, models)
        )
        which += "."
    heard = sorted({model.heard_seconds for model in models})
    hears = f"{'The model hears' if len(models) == 1 else 'Both hear'} {heard[0]:g} s at a time"
    if len(heard) > 1:
        hears = "A hears {:g} s at a time, B {:g} s".format(*(model.heard_seconds for model in models))
    if settings.long_audio == "windows":
        hearing = (
            f"{hears}: a longer clip is answered window by window ({WINDOW_OVERLAP:g} s overlap), the answer the "
            "option with the highest mean probability."
        )
    else:
        hearing = f"{hears}: of a longer clip, only the start is heard."
    return f"# R1-AQA: audio question answering\nAsk a multiple-choice question about a clip. {which} {hearing}"


def format_timings(timings: aqa.Timings) -> str:
    return (
        f"{timings.total:.2f} s (audio {timings.audio:.2f}, features {timings.features:.2f}, "
        f"generation {timings.generation:.2f}, scoring {timings.scoring:.2f})"
    )


def panel_cleared(panel: Panel, think: bool) -> dict:
    """A panel about to show a new answer: empty, with the thinking box only in thinking mode."""
    return {
        panel.answer: gr.Textbox(value="", elem_classes=["answer-box"]),
        panel.probabilities: None,
        panel.note: gr.Markdown(visible=False),
        panel.details: "",
        panel.raw: "",
        panel.thinking: gr.Textbox(value="", visible=think),
        panel.windows: gr.Dataframe(visible=False),
        panel.plot: gr.Plot(visible=False),
    }


def panel_text(panel: Panel, text: str) -> dict:
    """The text written so far, and the thinking in it (an unclosed <think> block counts)."""
    return {panel.raw: text, panel.thinking: extract_think(text) or ""}


def panel_result(panel: Panel, result: aqa.Result) -> dict:
    """A finished answer: the option, how it was chosen, the probabilities, and a long clip's windows."""
    note = gr.Markdown(f"**Note:** {result.note}", visible=True) if result.note else gr.Markdown(visible=False)
    shown = {
        panel.answer: result.answer or "(no answer)",
        panel.probabilities: result.probabilities,
        panel.note: note,
        panel.details: f"How it was chosen: {ANSWER_SOURCES[result.answer_source]} · {format_timings(result.timings)}",
        **panel_text(panel, result.raw),
    }
    if result.windows:
        shown[panel.windows] = gr.Dataframe(windows_table(result), visible=True)
        shown[panel.plot] = gr.Plot(window_plot(result), visible=True)
    return shown


def windows_table(result: aqa.Result) -> dict:
    """A row per window (its span, its answer, every option's probability in one cell, so that a phone shows them
    all), then the whole clip's mean."""

    def row(span: str, answer: str | None, probabilities: dict[str, float]) -> list[str]:
        shares = " · ".join(f"{option} {probabilities.get(option, 0.0):.0%}" for option in result.probabilities)
        return [span, answer or "", shares]

    rows = [row(f"{w.start:.0f}–{w.end:.0f} s", w.answer, w.probabilities) for w in result.windows]
    rows.append(row("whole clip (mean)", result.answer, result.probabilities))
    return {"headers": ["window", "answer", "probabilities"], "data": rows}


def window_plot(result: aqa.Result) -> Figure:
    """Each option's probability in each window, drawn at the window's middle: how the answer moves over the clip.
    Options with equal probabilities stay apart: each has its marker and dash, and its points sit a little to the
    side of the others'. The object-oriented matplotlib API, no pyplot state: figures can be drawn from several
    threads."""
    figure = Figure(figsize=PLOT_INCHES, dpi=100, layout="constrained")
    axes = figure.add_subplot()
    middles = [(window.start + window.end) / 2 for window in result.windows]
    options = list(result.probabilities)
    step = result.windows[-1].end * 0.012  # seconds between two options' points at one window
    for number, option in enumerate(options):
        shift = (number - (len(options) - 1) / 2) * step
        probabilities = [window.probabilities.get(option, 0.0) for window in result.windows]
        axes.plot(
            [middle + shift for middle in middles],
            probabilities,
            marker=MARKERS[number % len(MARKERS)],
            linestyle=DASHES[number % len(DASHES)],
            label=option if len(option) <= 24 else option[:23] + "…",
        )
    axes.set_title("Each option's probability, window by window", fontsize=PLOT_FONT["title"], loc="left")
    axes.set_xlim(0, result.windows[-1].end)
    axes.set_ylim(-0.03, 1.03)
    axes.set_xlabel("seconds (a point: the middle of a window)", fontsize=PLOT_FONT["label"])
    axes.set_ylabel("probability", fontsize=PLOT_FONT["label"])
    axes.tick_params(labelsize=PLOT_FONT["ticks"])
    axes.grid(alpha=0.3)
    figure.legend(fontsize=PLOT_FONT["legend"], loc="outside lower center", ncols=2, frameon=False)
    return figure


def agreement(labels: Sequence[str], results: Sequence[aqa.Result]) -> gr.Markdown:
    """The line over two models' answers: whether they agree, and if not, who answers what."""
    first, second = (result.answer or "(no answer)" for result in results)
    if results[0].answer == results[1].answer:
        return gr.Markdown(f"**Both models answer “{first}”.**", visible=True, elem_classes=["agree"])
    return gr.Markdown(
        f"**The models disagree:** {labels[0]} answers “{first}”, {labels[1]} answers “{second}”.",
        visible=True,
        elem_classes=["disagree"],
    )


def status_problems(problems: Sequence[str]) -> gr.Markdown:
    lines = "\n".join(f"- {problem}" for problem in problems)
    return gr.Markdown(f"**Not answered.** Fix and press Answer again:\n{lines}", elem_classes=["problem"])


def status_line(text: str) -> gr.Markdown:
    return gr.Markdown(text, elem_classes=[])


def answering_line(labels: Sequence[str]) -> str:
    if len(labels) == 1:
        return "**Answering** … (Stop ends it)"
    return f"**Answering** with {labels[0]}, then {labels[1]} … (Stop ends it)"


def answered_line(
    labels: Sequence[str], results: Sequence[aqa.Result], seconds: float, time_limit: float, cut: bool
) -> str:
    """The status line once every model has answered, `seconds` after the run began."""
    if len(results) == 1:
        done = f"Answered in {seconds:.2f} s."
    else:
        each = ", ".join(f"{label} in {result.timings.total:.2f} s" for label, result in zip(labels, results))
        done = f"Answered: {each} ({seconds:.2f} s in all)."
    if cut:
        done += f" Cut at the time limit ({time_limit:g} s per question): the answer is read from the text so far."
    return done


def results_look(stale: bool) -> gr.Column:
    """The results column, dimmed when it shows the answer to other inputs than those on the page."""
    return gr.Column(elem_classes=["stale" if stale else "fresh"])


def judge_panel(record: dict | None) -> tuple:
    """Values for: the judged row's number, the line naming it, its expected answer (one of its options), its
    comment."""
    if record is None:
        return None, "Answer a question, then judge it here.", gr.Radio(choices=[], value=None), ""
    answers = [record[prefix + "answer"] for prefix in ("", COMPARE) if prefix + "answer" in record]
    said = " / ".join(f"**{answer or '(none)'}**" for answer in answers)
    line = f"Judging #{record['#']}: {record['clip']}, “{record['question']}” → {said}"
    return record["#"], line, gr.Radio(choices=record["options"], value=record["expected"]), record["comment"]
