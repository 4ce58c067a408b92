"""Wall-clock timing that counts the GPU's queued work: the one clock of the answering code and the benchmarks."""

from __future__ import annotations

import time

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work (a no-op on the CPU), so that a clock read after it covers that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """Seconds between laps; waits for the GPU first, since its work is queued asynchronously."""

    def __init__(self, device: torch.device):
        self.device = device
        self.start = time.perf_counter()

    def lap(self) -> float:
        synchronize(self.device)
        now = time.perf_counter()
        seconds, self.start = now - self.start, now
        return seconds
