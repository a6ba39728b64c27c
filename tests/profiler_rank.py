"""One rank of a small data-parallel training run, profiled: ``python profiler_rank.py RANK WORLD PORT OUT``.

The test fixture of ``tests/test_fit_profiler.py`` runs two of these at once (gloo, CPU): a small MLP trained with
DistributedDataParallel, each step marked by ``prof.step()`` (one warm-up step, then 14 recorded); the profiler
writes ``OUT`` (a Chrome-trace JSON with ``ProfilerStep#N`` events and ``distributedInfo``).
"""

import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def main(rank: int, world: int, port: int, out: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(rank)
    model = DistributedDataParallel(
        torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = torch.nn.CrossEntropyLoss()
    steps = 14
    with torch.profiler.profile(  # a schedule makes prof.step() record the ProfilerStep#N events
        activities=[torch.profiler.ProfilerActivity.CPU],
        schedule=torch.profiler.schedule(wait=0, warmup=1, active=steps, repeat=1),
        on_trace_ready=lambda p: p.export_chrome_trace(out),
    ) as prof:
        for _ in range(steps + 1):
            x, y = torch.randn(64, 32), torch.randint(0, 10, (64,))
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
            prof.step()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
