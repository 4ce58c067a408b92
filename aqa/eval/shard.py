"""One process's share of a data-parallel evaluation: `torchrun --nproc_per_node N -m aqa eval run ...` (or
`accelerate launch`, or torchrun across nodes) starts N processes; each answers every N-th batch of the run's plan
on its own device, appends to its own partial file, and merges every process's answers into the one predictions file
when it finishes (aqa.eval.run).

The processes never wait for one another: there is no collective and no barrier, so none can hang on a peer that
died. They share only the output folder (on several nodes, a shared filesystem), where a lock file serialises the
merges, so that the last process to finish writes the complete predictions file. The launcher's environment
(RANK, WORLD_SIZE, LOCAL_RANK) is all that is read of torch.distributed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aqa.errors import InputError


@dataclass(frozen=True)
class Shard:
    """Which process of a launch this is: rank `rank` of `world`; `local_rank` counts on its own node (its GPU)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def owns(self, number: int) -> bool:
        """Whether the number-th batch (or checkpoint) of a plan is this process's: every world-th from its rank."""
        return number % self.world == self.rank

    def device(self, requested: str | None, cuda_devices: int) -> str | None:
        """The device this process loads its model on: with several processes, `cuda` (or no --device on a machine
        with GPUs) becomes cuda:LOCAL_RANK, one GPU per process; an explicit index or `cpu` is kept (two processes
        may share one GPU with --device cuda:0)."""
        if not self.distributed or requested not in (None, "cuda"):
            return requested
        if requested is None and cuda_devices == 0:
            return "cpu"
        if self.local_rank >= cuda_devices:
            raise InputError(
                f"process {self.rank} has LOCAL_RANK {self.local_rank} but this node has {cuda_devices} GPU(s): start "
                "at most one process per GPU, or give --device cuda:0 to let several share one"
            )
        return f"cuda:{self.local_rank}"

    def tag(self) -> str:
        """'[rank 1 of 8] ' before a line a process prints, so that interleaved lines say whose they are."""
        return f"[rank {self.rank} of {self.world}] " if self.distributed else ""


def shard_from_environment(environment: dict[str, str] | None = None) -> Shard:
    """The shard that torchrun's (or accelerate's) environment describes; one process when WORLD_SIZE is unset."""
    environment = os.environ if environment is None else environment
    if "WORLD_SIZE" not in environment:
        return Shard()
    try:
        world = int(environment["WORLD_SIZE"])
        rank = int(environment.get("RANK", "0"))
        local_rank = int(environment.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise InputError(
            f"WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers (got {environment.get('WORLD_SIZE')!r}, "
            f"{environment.get('RANK')!r}, {environment.get('LOCAL_RANK')!r})"
        ) from None
    if world < 1 or not 0 <= rank < world or local_rank < 0:
        raise InputError(f"RANK {rank} and LOCAL_RANK {local_rank} do not fit WORLD_SIZE {world}")
    return Shard(rank, world, local_rank)


@contextlib.contextmanager
def locked(path: Path, shard: Shard) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) while the block runs, when several processes share
    the output; one process takes no lock and leaves no lock file."""
    if not shard.distributed:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:  # append mode: an exclusive lock on NFS needs a file open for writing
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
