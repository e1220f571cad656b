"""Data-parallel training on 2 CPU processes (gloo): the critic sees the global batch, ranks agree."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from physworld.models.critics import SIGReg, VICReg

TESTS = Path(__file__).parent
WORLD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def critics() -> dict[str, torch.nn.Module]:
    return {"sigreg": SIGReg(dim=16, projections=32), "vicreg": VICReg(dim=16)}


def global_batch() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(64, 16) * 1.5 + 0.3


def critic_worker(rank: int, port: int, out: str) -> None:
    """One rank: the critics' value and input gradient on its half of the batch."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        half = global_batch().chunk(WORLD)[rank].clone().requires_grad_(True)
        results = {}
        for name, critic in critics().items():
            value = critic(half, 11)  # step 11: the directions must agree across ranks
            (grad,) = torch.autograd.grad(value, half)
            results[name] = (value.detach(), grad)
        torch.save(results, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_critics_on_two_half_batches_equal_one_process_on_the_whole_batch(tmp_path: Path):
    mp.spawn(critic_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    x = global_batch().requires_grad_(True)
    for name, critic in critics().items():
        value = critic(x, 11)
        (grad,) = torch.autograd.grad(value, x)
        for r, result in enumerate(ranks):
            torch.testing.assert_close(result[name][0], value.detach(), rtol=1e-5, atol=1e-5)
            # each rank's input gradient is world_size x the true one; DDP's averaging undoes it
            torch.testing.assert_close(
                result[name][1] / WORLD, grad.chunk(WORLD)[r], rtol=1e-4, atol=1e-6
            )


SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_models import MovingDots, small_jepa
from test_train import config
from physworld.train import fit

data = MovingDots(episodes=60)
torch.manual_seed(0)
model = small_jepa(data)
fit(model, data, config({out!r}, steps=40, batch_size=32, checkpoint_every=20, log_every=10))
flat = torch.cat([p.detach().flatten() for p in model.parameters()])
torch.save(flat, os.path.join({out!r}, "params_rank" + os.environ["RANK"] + ".pt"))
"""


def test_torchrun_two_processes_train_and_agree(tmp_path: Path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SCRIPT.format(tests=str(TESTS), out=str(tmp_path))))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={WORLD}",
        str(script),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    a, b = (torch.load(tmp_path / f"params_rank{r}.pt", weights_only=True) for r in range(WORLD))
    assert torch.equal(a, b)  # DDP kept the replicas identical
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in log] == [10, 20, 30, 40]  # rank 0 alone writes logs
    assert log[-1]["loss"] < log[0]["loss"] and log[-1]["eff_rank"] > 4
    assert json.loads((tmp_path / "train_state" / "state.json").read_text())["step"] == 40
