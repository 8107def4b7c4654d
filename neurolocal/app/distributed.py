"""Data-parallel training with torch.distributed (``neurolocal train --distributed``).

Run under torchrun, one process per worker::

    torchrun --standalone --nproc_per_node 2 -m neurolocal train --rule fa --distributed

Every process loads the data and walks the same sample order; each global batch (the
per-process ``--batch-size`` times the number of processes) is split by rank, each process
computes the rule's batch-mean update on its share, and one all-reduce averages the updates,
weighted by share size, before every process takes the same optimiser step. A run therefore
computes what one process computes on the combined batch (to float tolerance), except for
noise a rule draws per process. gloo on the CPU, nccl on CUDA (one device per process).
Only rank 0 prints and writes checkpoints.

The training loop calls :func:`start`, :func:`wrap` and :func:`finish`; a runner takes part
through its ``reduce`` attribute (called with the step's update tensors, averaged in place)
and, optionally, ``step_shard(x, onehot, lo, hi)`` (the global batch, its own rows).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurolocal.errors import NeurolocalError

COMMAND = "torchrun --standalone --nproc_per_node N -m neurolocal train ... --distributed"
TARGETS = ("numpy", "torch", "snntorch")


@dataclass(frozen=True)
class Group:
    """This process's place in the process group."""

    rank: int
    world: int
    local_rank: int
    backend: str
    owned: bool = True  #: this run initialised the group (and destroys it at the end)

    @property
    def main(self) -> bool:
        return self.rank == 0


def configure(cfg: Any) -> Any:
    """Check a ``--distributed`` config before work starts; CUDA: this process's device."""
    if not getattr(cfg, "distributed", False):
        return cfg
    if cfg.target not in TARGETS:
        raise NeurolocalError(f"--distributed: target {cfg.target} learns in one process; "
                              f"data-parallel training runs on {', '.join(TARGETS)}")
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        raise NeurolocalError(f"--distributed needs torchrun's process group: {COMMAND}")
    device = cfg.device or "cpu"
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise NeurolocalError(f"--device {device}: torch sees no CUDA device here; "
                                  "use --device cpu")
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        cfg = dataclasses.replace(cfg, device=f"cuda:{local}")
    return cfg


def world_size(cfg: Any) -> int:
    """Processes that share each global batch (1 unless ``--distributed``)."""
    if not getattr(cfg, "distributed", False):
        return 1
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main(cfg: Any) -> bool:
    """Does this process print (rank 0, or not distributed)?"""
    return not getattr(cfg, "distributed", False) or os.environ.get("RANK", "0") == "0"


def start(cfg: Any) -> Group | None:
    """Join the process group torchrun describes (gloo on the CPU, nccl on CUDA)."""
    if not getattr(cfg, "distributed", False):
        return None
    import torch.distributed as dist

    owned = not dist.is_initialized()
    if owned:  # a caller's own process group is used as it is
        dist.init_process_group("nccl" if str(cfg.device or "cpu").startswith("cuda")
                                else "gloo")
    return Group(dist.get_rank(), dist.get_world_size(),
                 int(os.environ.get("LOCAL_RANK", 0)), dist.get_backend(), owned)


def finish(group: Group | None) -> None:
    """Leave the process group this run joined (every process, also after an error)."""
    if group is None or not group.owned:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def shard(m: int, world: int, rank: int) -> tuple[int, int]:
    """Rows [lo, hi) of a global batch of ``m`` samples for ``rank`` (sizes differ by <= 1)."""
    base, extra = divmod(m, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class ShardedRunner:
    """A runner whose steps cover global batches split by rank, updates all-reduced.

    ``batch_size`` is the global batch (the loop chunks by it); everything else is the
    wrapped runner's.
    """

    def __init__(self, runner: Any, group: Group):
        self.inner, self.group = runner, group
        self.local_batch = int(getattr(runner, "batch_size", 1))
        self.batch_size = self.local_batch * group.world
        self.is_main = group.main
        self._weight = 1.0
        runner.reduce = self._reduce

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def learn(self, x, onehot) -> None:
        for i in range(0, len(x), self.batch_size):
            xg, yg = x[i:i + self.batch_size], onehot[i:i + self.batch_size]
            lo, hi = shard(len(xg), self.group.world, self.group.rank)
            self._weight = (hi - lo) / len(xg)
            if hi == lo:  # fewer samples than processes: take part with a zero weight
                lo, hi = 0, 1
            step = getattr(self.inner, "step_shard", None)
            if step is not None:
                step(xg, yg, lo, hi)
            else:
                self.inner.step(xg[lo:hi], yg[lo:hi])

    def _reduce(self, tensors: list) -> None:
        """Average ``tensors`` (batch means over each share) over the combined batch."""
        import torch
        import torch.distributed as dist

        ts = [torch.from_numpy(t) if isinstance(t, np.ndarray) else t for t in tensors]
        if len(ts) == 1:
            flat = ts[0]
            flat.mul_(self._weight)
        else:
            flat = torch.cat([t.reshape(-1) for t in ts]) * self._weight
        dist.all_reduce(flat)
        if len(ts) > 1:
            offset = 0
            for t in ts:
                t.copy_(flat[offset:offset + t.numel()].view_as(t))
                offset += t.numel()


def wrap(runner: Any, group: Group | None) -> Any:
    """``runner`` itself on one process, else a :class:`ShardedRunner`."""
    if group is None:
        return runner
    if not hasattr(runner, "reduce"):
        raise NeurolocalError(f"--distributed: the {runner.target} runner cannot all-reduce "
                              "its updates")
    return ShardedRunner(runner, group)


def result_info(group: Group | None) -> dict:
    return {} if group is None else {"rank": group.rank, "world_size": group.world,
                                     "backend": group.backend}
