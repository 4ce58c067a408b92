"""GRPO and SFT training for R1-AQA on TRL (docs/training.md)."""
