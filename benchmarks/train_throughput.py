"""Training throughput of the default JEPA: samples/s, FLOP/s, and the fraction of this machine's
matmul rate it reaches, fp32 vs bf16, pixels (64x64) and state vectors.

    python benchmarks/train_throughput.py --threads 2

One "sample" is one training window (``--window`` actions, window+1 frames) as in
``physworld train``. A step is what the training loop does: forward (bf16 autocast or not),
backward, gradient clipping, AdamW. Batches are synthetic tensors already in memory, so this
measures the model, not the data loader. FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` on one step (matmuls and convolutions, forward and
backward); the reference rate is a square matmul of the same precision, measured in this run
with the same threads. The header names the CPU's vector capability and whether it has native
bf16 (AVX512-BF16 or AMX): without it, bf16 runs on slow emulation paths.
"""

from __future__ import annotations

import argparse
import os

parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
)
parser.add_argument(
    "--threads", type=int, default=2, help="intra-op threads (pins OMP/OPENBLAS too)"
)
parser.add_argument(
    "--batch-size", type=int, default=32, help="windows per step (TrainConfig default)"
)
parser.add_argument(
    "--window", type=int, default=6, help="actions per window (TrainConfig default)"
)
parser.add_argument("--steps", type=int, default=8, help="timed steps per configuration (at most)")
parser.add_argument(
    "--max-seconds",
    type=float,
    default=30.0,
    help="stop timing a configuration after this long (at least one step): bf16 without native "
    "CPU support can take tens of seconds per step",
)
parser.add_argument(
    "--warmup", type=int, default=2, help="untimed steps first (the first counts FLOPs)"
)
parser.add_argument("--state-dim", type=int, default=24, help="state vector size in state mode")
parser.add_argument("--modes", default="pixels,state")
parser.add_argument("--precisions", default="fp32,bf16")
parser.add_argument("--profile", action="store_true", help="print where the time goes (top ops)")
args = parser.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)  # before torch is imported: its pools read these once

import time  # noqa: E402

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from physworld.models import JEPA, JEPAConfig  # noqa: E402
from physworld.train.loop import TrainConfig, make_optimizer  # noqa: E402

torch.set_num_threads(args.threads)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_rate(dtype: torch.dtype, n: int = 1024, seconds: float = 1.0) -> float:
    """FLOP/s of an n x n matmul in ``dtype``: this machine's practical peak for that precision."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start)


def make_batch(mode: str, b: int, t: int, action_dim: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    obs = (
        torch.randint(0, 256, (b, t + 1, 3, 64, 64), dtype=torch.uint8, generator=g)
        if mode == "pixels"
        else torch.randn(b, t + 1, args.state_dim, generator=g)
    )
    return {"obs": obs, "actions": torch.randn(b, t, action_dim, generator=g)}


def make_model(mode: str) -> JEPA:
    data = (
        dict(obs_kind="pixels", obs_shape=(3, 64, 64))
        if mode == "pixels"
        else dict(obs_kind="state", obs_shape=(args.state_dim,))
    )
    return JEPA(JEPAConfig(action_dim=2, **data)).train()


def train_step(model: JEPA, opt: torch.optim.Optimizer, batch: dict, bf16: bool, step: int) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(batch, step=step)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def measure(mode: str, precision: str) -> dict[str, float]:
    torch.manual_seed(0)
    model, batch, bf16 = (
        make_model(mode),
        make_batch(mode, args.batch_size, args.window),
        precision == "bf16",
    )
    opt = make_optimizer(model, TrainConfig())
    with FlopCounterMode(display=False) as counter:  # on the first warm-up step: it is untimed
        train_step(model, opt, batch, bf16, 0)
    flops = counter.get_total_flops()
    for step in range(1, args.warmup):  # warm-up: allocator, oneDNN kernel selection
        train_step(model, opt, batch, bf16, step)
    steps, start = 0, time.perf_counter()
    while steps < args.steps and (steps == 0 or time.perf_counter() - start < args.max_seconds):
        train_step(model, opt, batch, bf16, args.warmup + steps)
        steps += 1
    seconds = (time.perf_counter() - start) / steps
    if args.profile:
        with torch.profiler.profile() as prof:
            train_step(model, opt, batch, bf16, 99)
        print(f"\n### {mode} {precision}: top ops by self CPU time\n")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    return {
        "samples_per_s": args.batch_size / seconds,
        "flops": flops,
        "flop_rate": flops / seconds,
        "step_s": seconds,
        "timed_steps": steps,
    }


def main() -> None:
    native_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    print(
        f"threads={torch.get_num_threads()} batch={args.batch_size} window={args.window} "
        f"(frames per sample: {args.window + 1}) torch={torch.__version__} "
        f"cpu={torch.backends.cpu.get_cpu_capability()} native_bf16={native_bf16} "
        f"load={os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n"
    )
    rows = []
    for mode in args.modes.split(","):
        for precision in args.precisions.split(","):
            # the reference rate is taken right before each measurement, so that on a shared
            # machine both see the same load
            peak = matmul_rate(DTYPES[precision])
            rows.append((mode, precision, measure(mode, precision), peak))
    print(
        "| obs | precision | samples/s | ms/step (steps) | GFLOP/step | achieved GFLOP/s | matmul GFLOP/s | fraction |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for mode, precision, r, peak in rows:
        print(
            f"| {mode} | {precision} | {r['samples_per_s']:.1f} | {1e3 * r['step_s']:.1f} ({r['timed_steps']}) "
            f"| {r['flops'] / 1e9:.2f} | "
            f"{r['flop_rate'] / 1e9:.1f} | {peak / 1e9:.1f} | {r['flop_rate'] / peak:.0%} |"
        )
    for mode in args.modes.split(","):
        by = {p: r for m, p, r, _ in rows if m == mode}
        if {"fp32", "bf16"} <= set(by):
            print(
                f"\n{mode}: bf16 / fp32 samples/s = {by['bf16']['samples_per_s'] / by['fp32']['samples_per_s']:.2f}x"
            )


if __name__ == "__main__":
    main()
