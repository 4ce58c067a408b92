"""TRL's GRPOTrainer with an audio path: the clip's features reach generation and every log-probability pass.

TRL 1.16 has no audio support (its generation and log-probability passes know images only). Given prompts with audio
it would generate from the right inputs only by luck and compute the policy, old-policy and reference
log-probabilities on the <|AUDIO|> placeholder embeddings, silently: Qwen2-Audio raises no error when
`input_features` are missing. This subclass overrides four hooks, and relies on TRL internals, hence the pin
`trl==1.16.*` in requirements.txt:

- `_tokenize_prompts`: render the chat template, load the clips and compute log-mel features with the processor
  (which expands each <|AUDIO|> to one token per encoder frame); generation receives the features as a
  multimodal field, like a VLM's pixel values.
- `_get_per_token_logps_and_entropies`: every log-probability pass (old policy, reference, policy) goes through
  it; it attaches the features of exactly the rows being scored, sliced per chunk, and checks that each row's
  <|AUDIO|> tokens number its own clip's encoder outputs (`train.data.check_audio_rows`).
- `_generate_and_score_completions` / `_compute_loss`: the features travel with their completions through TRL's
  shuffle and split of the generation batch, and are handed to the loss pass.
- `_calculate_rewards`: also logs the format rate (share of completions that are exactly one <answer> block),
  whichever rewards are trained on.

Resuming, saving and evaluation are `train.common.AudioTrainerHooks`, shared with SFT.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from trl import GRPOTrainer

from train.common import AudioTrainerHooks, check_settings
from train.data import AUDIO_FEATURES, audio_path, check_audio_rows, clean_messages, collate_audio, load_clips
from train.evaluation import EvalSet
from train.rewards import strict_format_reward


class AudioGRPOTrainer(AudioTrainerHooks, GRPOTrainer):
    """GRPOTrainer for Qwen2-Audio: `model` must be a loaded model and `processing_class` its processor.

    audio_channel: how multi-channel clips become mono ("first": R1-AQA's); eval_set: questions `evaluate` answers.
    """

    def __init__(self, model, *args, audio_channel: str = "first", eval_set: EvalSet | None = None, **kwargs):
        if isinstance(model, str):
            raise TypeError("AudioGRPOTrainer needs a loaded Qwen2-Audio model, not a name (see train.grpo.get_model)")
        if kwargs.get("args") is not None:
            check_settings(kwargs["args"])
        self.remember_loaded_config(model)
        self.eval_set = eval_set
        self._audio_channel = audio_channel
        self._audio_token_id = model.config.audio_token_id
        config = model.config
        # TRL reads image_token_id for processor-based models to forbid sampling the placeholder (a sampled one would
        # not match the features); pointing it at <|AUDIO|> does exactly that for audio. Removed afterwards so the
        # saved config stays a plain Qwen2-Audio one.
        config.image_token_id = config.audio_token_id
        try:
            super().__init__(model, *args, eval_dataset=eval_set, **kwargs)
        finally:
            del config.image_token_id
        self._audio: dict[str, torch.Tensor] | None = None  # features of the rows now being scored

    @contextlib.contextmanager
    def _audio_rows(self, features: dict[str, torch.Tensor]):
        """Make `features` (one row per sequence) the audio of the log-probability passes run inside the block."""
        self._audio = features
        try:
            yield
        finally:
            self._audio = None

    def _tokenize_prompts(self, prompts: list):
        conversations = [clean_messages(prompt) for prompt in prompts]
        clips = load_clips([audio_path(messages) for messages in conversations], self._audio_channel)
        batch = collate_audio(self.processing_class, conversations, clips)
        # TRL pads prompt ids itself, so hand them over unpadded
        prompt_ids = [ids[mask.bool()].tolist() for ids, mask in zip(batch["input_ids"], batch["attention_mask"])]
        # Kept for the old-policy and reference passes that follow in `_generate_and_score_completions`
        self._audio = {key: batch[key].to(self.accelerator.device) for key in AUDIO_FEATURES}
        return prompt_ids, None, dict(self._audio)

    def _generate_and_score_completions(self, inputs):
        try:
            output = super()._generate_and_score_completions(inputs)
            # One row per completion, like prompt_ids: TRL's shuffle and split keep them aligned
            output.update(self._audio)
        finally:
            self._audio = None
        return output

    def _compute_loss(self, model, inputs):
        with self._audio_rows({key: inputs[key] for key in AUDIO_FEATURES}):
            return super()._compute_loss(model, inputs)

    def _get_per_token_logps_and_entropies(
        self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, **kwargs
    ):
        audio = self._audio
        if audio is None or len(audio["input_features"]) != len(input_ids):
            raise RuntimeError("a log-probability pass ran without the audio features of its rows")
        batch_size = batch_size or input_ids.size(0)
        parts = []
        for start in range(0, input_ids.size(0), batch_size):
            rows = slice(start, start + batch_size)
            check_audio_rows(input_ids[rows], audio["feature_attention_mask"][rows], self._audio_token_id)
            # TRL only calls `model(**inputs)` in there; binding the chunk's features keeps its loop intact
            with_audio = functools.partial(model, **{key: value[rows] for key, value in audio.items()})
            parts.append(
                super()._get_per_token_logps_and_entropies(
                    with_audio, input_ids[rows], attention_mask[rows], logits_to_keep, **kwargs
                )
            )
        logps, entropies, aux_losses = zip(*parts)
        return (
            torch.cat(logps),
            torch.cat(entropies) if entropies[0] is not None else None,
            torch.stack(aux_losses).mean() if aux_losses[0] is not None else None,
        )

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        think = [row.get("think", False) for row in inputs]  # thinking rows: one think block, then the answer
        hits = torch.tensor(strict_format_reward(completions, think=think), device=self.accelerator.device)
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["completions/format_rate"].append(self.accelerator.gather(hits).mean().item())
        return rewards
