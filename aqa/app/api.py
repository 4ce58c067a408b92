"""`/answer` and `/answer_stream`, the app's API for gradio_client: (audio file, question, list of options) in, the
result of `aqa ask --json` out (with the model's name and precision; with --compare, the second model's result under
"compare" and whether the two agree)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import gradio as gr

import aqa
from aqa.app.checks import checked_clip
from aqa.app.settings import AppSettings
from aqa.app.slot import AnswerFn, RequestClock, StreamFn, decoding_options, shown_as_gradio_error, streamed
from aqa.audio import SAMPLE_RATE


def api_result(models: Sequence[aqa.AQAModel], results: Sequence[aqa.Result]) -> dict:
    """What `/answer` returns: the (first) model's Result as `aqa ask --json` gives it, with the model's name, family
    and precision; with --compare, the second model's under "compare" and whether the two answers agree."""
    first, *others = [
        {"model": model.name, "family": model.family.name, "precision": model.precision, **result.to_dict()}
        for model, result in zip(models, results)
    ]
    if others:
        first |= {"compare": others[0], "agree": results[0].answer == results[1].answer}
    return first


def add_api(
    models: Sequence[aqa.AQAModel],
    answerers: Sequence[AnswerFn],
    streams: Sequence[StreamFn],
    settings: AppSettings,
) -> None:
    """The two endpoints, on hidden components: an audio file (gradio_client's handle_file uploads it), a string and
    a JSON list. The audio is an Audio component's, whose file data Gradio neither decodes nor copies (a File
    component's would leave an empty temporary file in the cache at every call)."""

    def decodings_for(models, samples) -> list[aqa.DecodingOptions]:
        """Each model's decoding of the clip (answer mode): its windows share its token budget."""
        seconds = len(samples) / SAMPLE_RATE
        return [decoding_options(settings, False, seconds, model.heard_seconds) for model in models]

    def answer_api(audio, question, options) -> dict:
        """Answer a question about a clip: (audio file, question, list of options) -> the answer, how it was chosen,
        the raw output, every option's probability, a long clip's windows, timings; with --compare, the second
        model's result under "compare" and "agree"."""
        clock = RequestClock(settings.time_limit)  # one limit for the models together
        with shown_as_gradio_error():
            samples = checked_clip(settings, audio, question, options)
            options = list(options)
            results = [
                answer(samples, question, options, decoding, clock.left())
                for answer, decoding in zip(answerers, decodings_for(models, samples))
            ]
        return api_result(models, results)

    def answer_stream_api(audio, question, options):
        """The same answer, streamed: {"done": false, "model": name, "text": the text so far} as each model writes,
        then {"done": true, ...} with what /answer returns. Cancelling the job ends generation at the next token."""
        clock = RequestClock(settings.time_limit)
        with shown_as_gradio_error():
            samples = checked_clip(settings, audio, question, options)
        options, results = list(options), []
        for model, stream, decoding in zip(models, streams, decodings_for(models, samples)):
            pieces = stream(samples, question, options, decoding, clock.left())
            result = yield from streamed(
                pieces, threading.Event(), lambda text, name=model.name: {"done": False, "model": name, "text": text}
            )
            results.append(result)
        yield {"done": True, **api_result(models, results)}

    with gr.Column(visible=False):
        audio = gr.Audio(type="filepath", label="audio")
        question = gr.Textbox(label="question")
        options = gr.JSON(label="options")
        result = gr.JSON(label="result")
        trigger, stream_trigger = gr.Button(), gr.Button()
    for fn, name, button in ((answer_api, "answer", trigger), (answer_stream_api, "answer_stream", stream_trigger)):
        button.click(
            fn,
            [audio, question, options],
            result,
            api_name=name,
            concurrency_id="model",
            concurrency_limit=1,
            preprocess=False,  # every field as sent, checked by the handler (aqa.app.checks), none converted first
        )
