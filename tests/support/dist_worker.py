"""Run by tests/test_distributed.py under torchrun (2 processes, gloo): three data-parallel runs.

1. rate mode through the CLI (``neurolocal train ... --distributed``, what
   ``torchrun -m neurolocal`` runs), 2. spiking on snntorch the same way, 3. DDP over a
   ``local_rule`` module. Each writes its weights into the folder given as argv[1].
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from neurolocal.app.cli import main

OUT = Path(sys.argv[1])
RATE = ["train", "--rule", "fa", "--hidden", "32", "--samples", "203", "--test-samples", "50",
        "--epochs", "2", "--json"]
SPIKING = ["train", "--rule", "dfa", "--spiking", "--hidden", "24", "--timesteps", "6",
           "--samples", "83", "--test-samples", "20", "--json"]


def ddp_local_rule(batch: int, steps: int) -> None:
    """DDP over a local_rule module: rank r trains on its rows of each global batch."""
    from neurolocal.torch import local_rule

    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = local_rule(torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(),
                                           torch.nn.Linear(16, 5)), "kp")
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(ddp.parameters(), 1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.rand(batch * world, 20, generator=g)
        y = torch.randint(0, 5, (batch * world,), generator=g)
        rows = slice(rank * batch, (rank + 1) * batch)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ddp(x[rows]), y[rows]).backward()
        opt.step()
    if rank == 0:
        torch.save(model.state_dict(), OUT / "ddp.pt")


if __name__ == "__main__":
    dist.init_process_group("gloo")  # one group for the three runs (train() uses it as it is)
    assert main(RATE + ["--batch-size", "10", "--distributed", "--out", str(OUT / "rate.h5")]) == 0
    assert main(SPIKING + ["--batch-size", "5", "--distributed",
                           "--out", str(OUT / "spiking.h5")]) == 0
    ddp_local_rule(batch=8, steps=3)
    dist.destroy_process_group()
