"""GPU-only checks (skipped without CUDA): the default bf16 path and 4-bit NF4 on the GPU, on the tiny checkpoint.

Speed and memory of the full-size model are measured by `bench/run_gpu.sh`, which also runs these tests: their clips
are written with soundfile, since the GPU machine has no sox, espeak-ng or FFmpeg.
"""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

import aqa

pytestmark = pytest.mark.gpu
OPTIONS = ["Man", "Woman", "Child", "Robot"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Clips at three sample rates (one of them stereo), each a tone over noise."""
    folder = tmp_path_factory.mktemp("gpu-clips")
    rng = np.random.default_rng(0)
    path = {}
    for name, rate, seconds, channels in [
        ("speech_16k_mono.wav", 16000, 3.0, 1),
        ("tone_8k.wav", 8000, 2.0, 1),
        ("stereo_44k.wav", 44100, 3.0, 2),
    ]:
        tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)
        samples = tone[:, None] + 0.05 * rng.standard_normal((tone.size, channels))
        path[name] = folder / name
        sf.write(path[name], samples.astype(np.float32), rate)
    return path


@pytest.mark.parametrize("precision", ["bf16", "4bit", "8bit"])
def test_answers_on_the_gpu(tiny_model_dir, clips, precision):
    model = aqa.load_model(str(tiny_model_dir), precision=precision)
    assert model.device.type == "cuda" and next(model.hf.parameters()).is_cuda
    result = aqa.answer(model, clips["speech_16k_mono.wav"], "Who is speaking?", OPTIONS)
    assert result.answer in OPTIONS
    assert math.isclose(sum(result.probabilities.values()), 1.0, abs_tol=1e-6)


def test_gpu_is_the_default_device(tiny_model_dir):
    model = aqa.load_model(str(tiny_model_dir))
    assert (model.device.type, model.precision) == ("cuda", "bf16")
    assert model.hf.dtype == torch.bfloat16


def test_batched_equals_one_at_a_time_in_bf16(tiny_model_dir, clips):
    model = aqa.load_model(str(tiny_model_dir), precision="bf16")
    names = ["speech_16k_mono.wav", "tone_8k.wav", "stereo_44k.wav"]
    questions = [aqa.Question(clips[name], "What is it?", ("Speech", "Tone", "Noise")) for name in names]
    batched = dict(aqa.answer_many(model, questions, aqa.DecodingOptions(max_new_tokens=16), batch_size=3))
    for index, question in enumerate(questions):
        alone = aqa.answer(
            model, question.audio, question.text, question.options, aqa.DecodingOptions(max_new_tokens=16)
        )
        assert batched[index].answer == alone.answer


@pytest.mark.parametrize("precision", ["4bit", "8bit"])
def test_quantized_models_keep_the_embedding_table_in_cpu_memory(tiny_model_dir, clips, precision):
    from aqa.model import HostEmbedding

    hosted = aqa.load_model(str(tiny_model_dir), precision=precision)
    plain = aqa.load_model(str(tiny_model_dir), precision=precision, embeddings_on_cpu=False)
    embedding = hosted.hf.get_input_embeddings()
    assert isinstance(embedding, HostEmbedding) and embedding.weight.device.type == "cpu"
    assert plain.hf.get_input_embeddings().weight.is_cuda
    options = aqa.DecodingOptions(max_new_tokens=12)
    results = [aqa.answer(m, clips["stereo_44k.wav"], "Who is speaking?", OPTIONS, options) for m in (hosted, plain)]
    assert results[0].raw == results[1].raw
    for option in OPTIONS:
        assert results[0].probabilities[option] == pytest.approx(results[1].probabilities[option], abs=1e-3)


def test_compiled_decoding_writes_what_eager_writes_on_cuda(tiny_model_dir, clips):
    """The fast path (static cache, decode step in CUDA graphs) against eager generate: the same tokens, greedy and
    sampled under a seed, and a stream that adds up to the text. In float64: compiled kernels round differently from
    eager ones, and a difference in the last bits of float32 can move a near-tie's argmax or a sampled token."""
    from dataclasses import replace

    compiled = aqa.load_model(str(tiny_model_dir), precision="fp32", compile=True)
    assert compiled.decoder == "compiled"
    compiled.hf.to(torch.float64)
    eager = replace(compiled, decoder="eager")
    names = ["speech_16k_mono.wav", "tone_8k.wav", "stereo_44k.wav"]
    questions = [aqa.Question(clips[name], "What is it?", ("Speech", "Tone", "Noise")) for name in names]
    for decoding in (
        aqa.DecodingOptions(max_new_tokens=24),
        aqa.DecodingOptions(sample=True, seed=3, max_new_tokens=24),
    ):
        fast = dict(aqa.answer_many(compiled, questions, decoding, batch_size=3))
        slow = dict(aqa.answer_many(eager, questions, decoding, batch_size=3))
        assert [fast[i].raw for i in range(3)] == [slow[i].raw for i in range(3)]
    *pieces, result = aqa.answer_stream(
        compiled, clips["tone_8k.wav"], "What?", OPTIONS, aqa.DecodingOptions(think=True, max_new_tokens=48)
    )
    assert "".join(pieces) == result.raw


def test_bf16_on_a_gpu_compiles_by_default(tiny_model_dir, clips):
    model = aqa.load_model(str(tiny_model_dir))
    assert model.decoder == "compiled"
    result = aqa.answer(model, clips["stereo_44k.wav"], "Who is speaking?", OPTIONS, aqa.DecodingOptions(think=True))
    assert result.answer in OPTIONS
