"""TRL's GRPOTrainer with an audio path: the clip's features reach generation and every log-probability pass, for
every model family (aqa.families).

TRL 1.16 has no audio support (its generation and log-probability passes know images only). Given prompts with audio
it would generate from the right inputs only by luck and compute the policy, old-policy and reference
log-probabilities on the audio placeholder embeddings, silently: the models raise no error when their audio features
are missing. This subclass overrides four hooks and wraps TRL's construction of the reference model, and relies on
TRL internals, hence the pin `trl==1.16.*` in requirements.txt:

- `_tokenize_prompts`: render the chat template, load the clips and compute log-mel features with the processor
  (which expands each audio placeholder to one token per encoder output); generation receives the features as
  multimodal fields, like a VLM's pixel values.
- `_get_per_token_logps_and_entropies`: every log-probability pass (old policy, reference, policy) goes through
  it; it attaches the features of exactly the rows being scored, chunk by chunk, and checks that each row's audio
  tokens number its own clip's encoder outputs (`train.data.check_audio_rows`).
- `_generate_and_score_completions` / `_compute_loss`: the features travel with their completions through TRL's
  shuffle and split of the generation batch (kept by row: `Family.audio_by_row`), and are handed to the loss pass.
- `_calculate_rewards`: also logs the format rate (share of completions that are exactly one <answer> block),
  whichever rewards are trained on.

A mixture-of-experts policy (Qwen3-Omni) adds its router's load-balancing loss as TRL 1.16 does: when the text config
has `output_router_logits` and a non-zero `router_aux_loss_coef` (or `--router_aux_loss_coef`), the policy pass asks
for the router logits and `router_aux_loss_coef * aux_loss`, divided by the gradient accumulation steps like the
policy loss, is added once per micro-batch (`_compute_loss`).

Resuming, saving and evaluation are `train.common.AudioTrainerHooks`, shared with SFT.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import trl.trainer.grpo_trainer as grpo_trainer
from trl import GRPOTrainer

from aqa.families import family_of
from train.common import AudioTrainerHooks, check_settings
from train.data import audio_path, check_audio_rows, clean_messages, collate_audio, load_clips
from train.evaluation import EvalSet
from train.rewards import strict_format_reward


class AudioGRPOTrainer(AudioTrainerHooks, GRPOTrainer):
    """GRPOTrainer for an audio model of any family: `model` must be a loaded model (an Omni checkpoint's thinker)
    and `processing_class` its processor.

    audio_channel: how multi-channel clips become mono ("first": R1-AQA's); eval_set: questions `evaluate` answers.
    """

    def __init__(self, model, *args, audio_channel: str = "first", eval_set: EvalSet | None = None, **kwargs):
        if isinstance(model, str):
            raise TypeError("AudioGRPOTrainer needs a loaded model, not a name (see train.common.get_model)")
        if kwargs.get("args") is not None:
            check_settings(kwargs["args"])
        self.remember_loaded_config(model)
        self.eval_set = eval_set
        self.family = family_of(model.config.model_type)
        self._audio_channel = audio_channel
        self._audio_token_id = model.config.audio_token_id
        with placeholder_not_sampled(model.config), reference_of_class(self.family.model_class()):
            super().__init__(model, *args, eval_dataset=eval_set, **kwargs)
        self._audio: dict[str, torch.Tensor] | None = None  # features of the rows now being scored, kept by row

    @contextlib.contextmanager
    def _audio_rows(self, features: dict[str, torch.Tensor]):
        """Make `features` (kept by row) the audio of the log-probability passes run inside the block."""
        self._audio = features
        try:
            yield
        finally:
            self._audio = None

    def _tokenize_prompts(self, prompts: list):
        conversations = [clean_messages(prompt) for prompt in prompts]
        clips = load_clips([audio_path(messages) for messages in conversations], self._audio_channel)
        batch = collate_audio(self.processing_class, self.family, conversations, clips)
        # TRL pads prompt ids itself, so hand them over unpadded
        prompt_ids = [ids[mask.bool()].tolist() for ids, mask in zip(batch["input_ids"], batch["attention_mask"])]
        # Kept for the old-policy and reference passes that follow in `_generate_and_score_completions`; features in
        # the model's dtype, as some encoders (Audio Flamingo 3's) do not cast their input
        device, dtype = self.accelerator.device, self.model.dtype
        self._audio = {
            key: batch[key].to(device, dtype if batch[key].is_floating_point() else None)
            for key in self.family.audio_keys
        }
        return prompt_ids, None, self.family.model_audio(self._audio)

    def _generate_and_score_completions(self, inputs):
        try:
            output = super()._generate_and_score_completions(inputs)
            # One row per completion, like prompt_ids: TRL's shuffle and split keep them aligned
            output.update(self._audio)
        finally:
            self._audio = None
        return output

    def _compute_loss(self, model, inputs):
        with self._audio_rows({key: inputs[key] for key in self.family.audio_keys}):
            return super()._compute_loss(model, inputs)

    def _get_per_token_logps_and_entropies(
        self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, **kwargs
    ):
        audio = self._audio
        if audio is None or len(audio[self.family.audio_keys[0]]) != len(input_ids):
            raise RuntimeError("a log-probability pass ran without the audio features of its rows")
        batch_size = batch_size or input_ids.size(0)
        parts = []
        for start in range(0, input_ids.size(0), batch_size):
            rows = slice(start, start + batch_size)
            chunk = {key: value[rows] for key, value in audio.items()}
            check_audio_rows(input_ids[rows], chunk, self.family, self._audio_token_id)
            # TRL only calls `model(**inputs)` in there; binding the chunk's features keeps its loop intact
            with_audio = functools.partial(model, **self.family.model_audio(chunk))
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


_MISSING = object()


@contextlib.contextmanager
def placeholder_not_sampled(config):
    """TRL reads `config.image_token_id` for processor-based models and never samples that token (a sampled
    placeholder would not match the features); pointed at the audio placeholder for the block, it does exactly that
    for audio. Qwen2-Audio and Audio Flamingo 3 have no image_token_id (TRL would crash), the Omni thinkers have their
    own: it is put back afterwards, so the saved config stays the checkpoint's."""
    original = getattr(config, "image_token_id", _MISSING)
    config.image_token_id = config.audio_token_id
    try:
        yield
    finally:
        if original is _MISSING:
            del config.image_token_id
        else:
            config.image_token_id = original


@contextlib.contextmanager
def reference_of_class(model_class):
    """With beta > 0 and no LoRA, TRL loads the reference model from the policy's path with the class the checkpoint's
    config names: for an Omni checkpoint that is the whole model, talker included, whose forward is not the
    thinker's. For the block, TRL loads it with the policy's own class (the thinker only)."""
    create = grpo_trainer.create_model_from_path
    grpo_trainer.create_model_from_path = functools.partial(create, architecture=model_class)
    try:
        yield
    finally:
        grpo_trainer.create_model_from_path = create
