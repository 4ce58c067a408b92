"""GRPO and SFT training for R1-AQA on TRL (see README: Training)."""
