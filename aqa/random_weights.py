"""Random-weight Qwen2-Audio models, built offline in seconds: the tiny checkpoint and the full-size architecture.

Nothing can be downloaded in CI, so every test runs on the tiny checkpoint (`aqa tiny DIR`). It has the real
architecture, the real processor classes and the key-based chat template that 2024-25 checkpoints carry, only
small: a byte-level tokenizer (no merges), a 2-layer audio encoder and a 2-layer language model. The full size
(`aqa bench --random-weights full`) has R1-AQA's shapes, so that speed and memory can be measured without the
weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import (
    GenerationConfig,
    Qwen2AudioConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    Qwen2Tokenizer,
    WhisperFeatureExtractor,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

from aqa.errors import ModelError
from aqa.model import DTYPES, KEEP_UNQUANTIZED, AQAModel, choose_decoder, place_embeddings

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]

# The template Qwen2-Audio-7B-Instruct (and so R1-AQA) ships in its tokenizer config: the audio placeholder is
# rendered only when the content dict has an `audio` or `audio_url` key, unlike transformers 5's built-in default
# (which also checks `type == 'audio'`). Tests behave like the real model only with this one.
CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if 'audio' in content or 'audio_url' in content %}{% set audio_count.value = audio_count.value + 1 %}"
    "Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Full-size shapes of Qwen2-Audio-7B(-Instruct) and R1-AQA (their config.json: a Whisper-large-style encoder and a
# Qwen-7B language model, 8.40B parameters); used by `--random-weights full`.
FULL_AUDIO = dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120)
FULL_TEXT = dict(
    vocab_size=156032,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=8192,
)
# Small but shaped like the real thing; linear sizes stay multiples of 32 for bitsandbytes' CPU kernels.
TINY_AUDIO = dict(d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128)
TINY_TEXT = dict(
    vocab_size=288,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
)


def build_tokenizer() -> Qwen2Tokenizer:
    """A byte-level BPE tokenizer with no merges: every UTF-8 byte is one token, plus Qwen's special tokens."""
    byte_chars = sorted(bytes_to_unicode().values())
    vocab = {ch: i for i, ch in enumerate(byte_chars)}
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=[], unk_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.padding_side = "left"
    return tokenizer


def build_processor() -> Qwen2AudioProcessor:
    # 128 mel bins and 30 s windows, exactly like the real model: the feature extractor's frame count must equal
    # 2 * max_source_positions of the encoder.
    features = WhisperFeatureExtractor(
        feature_size=128, sampling_rate=16000, chunk_length=30, return_attention_mask=True
    )
    return Qwen2AudioProcessor(feature_extractor=features, tokenizer=build_tokenizer(), chat_template=CHAT_TEMPLATE)


def build_config(tokenizer: Qwen2Tokenizer, size: str = "tiny") -> Qwen2AudioConfig:
    """A Qwen2AudioConfig of the given size ("tiny" or "full") whose special ids match `tokenizer`."""
    audio, text = (TINY_AUDIO, TINY_TEXT) if size == "tiny" else (FULL_AUDIO, FULL_TEXT)
    ids = tokenizer.convert_tokens_to_ids
    text_config = dict(
        model_type="qwen2",
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
        **text,
    )
    audio_config = dict(model_type="qwen2_audio_encoder", num_mel_bins=128, max_source_positions=1500, **audio)
    return Qwen2AudioConfig(audio_config=audio_config, text_config=text_config, audio_token_id=ids("<|AUDIO|>"))


def build_generation_config(tokenizer: Qwen2Tokenizer) -> GenerationConfig:
    # Qwen2-Audio-7B-Instruct ships a sampling config; keep one here too so `--sample` has something to use.
    ids = tokenizer.convert_tokens_to_ids
    return GenerationConfig(
        do_sample=True,
        top_k=0,
        top_p=0.5,
        temperature=0.7,
        repetition_penalty=1.1,
        eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")],
        pad_token_id=ids("<|endoftext|>"),
        bos_token_id=ids("<|endoftext|>"),
    )


def build_random_model(
    size: str = "tiny",
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    embeddings_on_cpu: bool | None = None,
    seed: int = 0,
    compile: bool | None = None,
) -> AQAModel:
    """The tiny or full-size Qwen2-Audio architecture with random weights, allocated on `device` in its dtype.

    The full size is built directly on the GPU in bf16 (16 GiB), never as 34 GB of fp32 on the CPU first. For 4-bit
    the bf16 language-model layers are then replaced by NF4 ones, and the input embedding placed as loading a
    checkpoint with the same precision places it.
    """
    if precision == "8bit":
        raise ModelError("random weights support bf16, fp16, fp32 and 4bit")
    device = torch.device(device)
    processor = build_processor()
    torch.manual_seed(seed)
    with device:
        model = Qwen2AudioForConditionalGeneration._from_config(
            build_config(processor.tokenizer, size), dtype=DTYPES.get(precision, torch.bfloat16)
        )
    model.generation_config = build_generation_config(processor.tokenizer)
    if precision == "4bit":
        quantize_4bit(model, device)
    place_embeddings(model, precision, device, embeddings_on_cpu)
    model.eval()
    decoder = choose_decoder(model, precision, device, compile)
    return AQAModel(model, processor, f"random-{size}", precision, device, decoder)


def quantize_4bit(model: nn.Module, device: torch.device) -> None:
    """Swap each linear layer outside KEEP_UNQUANTIZED for a bitsandbytes NF4 one (double quantization, bf16
    compute): the settings `load_model(..., "4bit")` gives transformers. One layer at a time, so memory falls as
    it goes."""
    import bitsandbytes as bnb  # optional (no macOS wheel), and only 4-bit needs it

    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear) or name.startswith(tuple(KEEP_UNQUANTIZED)):
            continue
        layer = bnb.nn.Linear4bit(
            module.in_features,
            module.out_features,
            bias=module.bias is not None,
            compute_dtype=torch.bfloat16,
            quant_type="nf4",
            device="meta",
        )
        weight = bnb.nn.Params4bit(module.weight.data, requires_grad=False, quant_type="nf4", module=layer)
        layer.weight = weight.to(device)  # moving a Params4bit quantizes it
        if module.bias is not None:
            layer.bias = module.bias
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer)
    if device.type == "cuda":
        torch.cuda.empty_cache()


def build_tiny_checkpoint(directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Qwen2-Audio checkpoint (model, processor, chat template) to `directory`."""
    directory = Path(directory)
    model = build_random_model("tiny", seed=seed, compile=False)
    model.hf.save_pretrained(directory)
    model.processor.save_pretrained(directory)
    return directory
