"""The three JEPA critics on the same pixel data and budget: collapse diagnostics and probe error.

    python benchmarks/critics.py [--worlds balls,push] [--critics sigreg,vicreg,ema] [--steps 1500]
                                 [--episodes 200] [--threads 2] [--work runs/critics] [--jepa JSON]

For each world, one pixel dataset (64x64; Balls: free balls, no control, Push: the mixed
expert/random policy) and, for each critic, the default JEPA (CNN encoder, transformer
predictor) trained with the same seed, steps and batches. Printed per run, as a Markdown table:

- **training time**: the optimizer steps' wall time (from the loop's samples/s log);
- **collapse diagnostics** at the end of training: mean and smallest per-dimension std of the
  latent batch, its effective rank (of ``latent_dim``), and the critic's own value;
- **probe error**: the state probe fitted on frozen single-frame latents of the training
  episodes, measured on held-out episodes: mean object-position error as a percentage of the
  arena width (target < 2%), overall and per object; beside it, the same error on the frames
  the probe was fitted on (a large gap: the probe memorises its training episodes).

A last row per world, "untrained", fits the same probe on the same frames read by a freshly
initialised encoder (``--no-baseline`` skips it): the floor that tells whether training taught
the encoder anything about positions, or lost what random features already carried. With
``--supervised``, a "supervised" row trains the same encoder for the same steps on the same
frames (``batch_size * (window + 1)`` per step) to regress the true state, then fits the same
probe: the ceiling of this budget, what the encoder can learn when it is told the answer.

Runs already finished under ``--work`` are reused, interrupted ones resume.
"""

from __future__ import annotations

import argparse
import os
import sys

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--worlds", default="balls,push")
parser.add_argument("--critics", default="sigreg,vicreg,ema")
parser.add_argument("--episodes", type=int, default=200, help="training episodes per world (10%% held out)")
parser.add_argument("--steps", type=int, default=1500, help="optimizer steps per run")
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--window", type=int, default=6)
parser.add_argument("--probe-steps", type=int, default=2000)
parser.add_argument("--probe-frames", type=int, default=8192)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--jepa", default="{}", help='JEPAConfig overrides as JSON, e.g. \'{"recon_weight": 1}\'')
parser.add_argument("--work", default="runs/critics")
parser.add_argument(
    "--no-baseline", action="store_true", help="skip the probe on an untrained encoder"
)
parser.add_argument("--supervised", action="store_true", help="add the supervised-encoder row (the ceiling)")
args = parser.parse_args()
os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)  # before torch

import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from physworld.data import CollectConfig, EpisodeStore, Windows, collect  # noqa: E402
from physworld.models import JEPAConfig, WorldModel, load_model  # noqa: E402
from physworld.models.probe import encode_frames, fit_probe  # noqa: E402
from physworld.runtime import seed_everything  # noqa: E402
from physworld.train import TrainConfig, read_metrics, train, training_seconds  # noqa: E402
from physworld.train.loop import build_model  # noqa: E402

WORLDS = {"balls": ("physworld/Balls-v0", "random"), "push": ("physworld/Push-v0", "mixed")}


def per_object_error(model: WorldModel, data: Path) -> list[float]:
    """Probe position error per object (% of the arena) on the held-out episodes the loop used."""
    _, held_out = EpisodeStore.open(data).split(0.1, seed=0)  # the loop's split (TrainConfig.seed=0)
    z, states = encode_frames(model, Windows(held_out, args.window), 2048, 64, seed=1)
    with torch.no_grad():
        pred = model.read_state(z)
    n = states.shape[-1] // 6
    err = (pred.view(-1, n, 6)[..., :2] - states.view(-1, n, 6)[..., :2]).norm(dim=-1).mean(0)
    return (100 * err / model.config.arena_size).tolist()


def finished(run: Path) -> bool:
    """Whether ``run`` reached ``--steps`` and fitted its probe: then its logs and model are read
    as they are, with no pass through the training loop."""
    state = run / "train_state" / "state.json"
    return state.is_file() and json.loads(state.read_text())["step"] >= args.steps and any(
        "probe_pos_err" in r for r in read_metrics(run)
    )


def supervised_encoder(model: WorldModel, store: EpisodeStore) -> float:
    """Train ``model.encoder`` (plus a linear head) to regress the standardised true state of
    single frames for ``--steps`` steps of the frames a JEPA step sees; return the wall time."""
    frames_per_step = args.batch_size * (args.window + 1)
    frames = Windows(store, 1)  # the first frame of each is used
    states = next(frames.batches(4096, seed=1))["states"][:, 0]
    loc, scale = states.mean(0), states.std(0).clamp_min(1e-3)
    head = torch.nn.Linear(model.config.latent_dim, states.shape[-1])
    params = [*model.encoder.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3)
    start = time.perf_counter()
    model.train()
    for _, batch in zip(range(args.steps), frames.batches(frames_per_step, seed=0), strict=False):
        loss = torch.nn.functional.mse_loss(head(model.encode(batch["obs"][:, 0])), (batch["states"][:, 0] - loc) / scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return time.perf_counter() - start


def reference_row(name: str, data: Path, kind: str, overrides: dict) -> dict:
    """The probe fitted exactly as after training, on a freshly initialised encoder ("untrained")
    or on one trained with the true state ("supervised"), of the architecture ``--jepa`` sets."""
    store = EpisodeStore.open(data)
    train_store, held_out = store.split(0.1, seed=0)
    seed_everything(0)
    model = build_model(TrainConfig(model="jepa", jepa=JEPAConfig(**overrides)), store.meta).eval()
    seconds = supervised_encoder(model, train_store) if kind == "supervised" else None
    probe = fit_probe(
        model, Windows(train_store, args.window), steps=args.probe_steps, frames=args.probe_frames,
        batch_size=args.batch_size, seed=0, eval_windows=Windows(held_out, args.window),
    )
    row = {
        "world": name, "critic": kind, "probe_pos_err_pct": 100 * probe["probe_pos_err"],
        "probe_fit_err_pct": 100 * probe["probe_pos_err_fit"],
        "probe_err_per_object_pct": per_object_error(model, data),
    }
    return row if seconds is None else {**row, "train_seconds": seconds}


def main() -> None:
    overrides = json.loads(args.jepa)
    work = Path(args.work).resolve()
    rows = []
    for name in args.worlds.split(","):
        world, policy = WORLDS[name]
        data = work / "data" / name
        if not data.exists():
            collect(CollectConfig(world=world, episodes=args.episodes, out=data, obs="pixels", policy=policy, seed=0))
        for critic in args.critics.split(","):
            run = work / f"{name}-{critic}"
            if not finished(run):
                train(
                    TrainConfig(
                        data=str(data), model="jepa", steps=args.steps, batch_size=args.batch_size, window=args.window,
                        out=str(run), threads=args.threads, seed=0, probe_steps=args.probe_steps,
                        probe_frames=args.probe_frames, jepa=JEPAConfig(**{**overrides, "critic": critic}),
                    )
                )
            logs = read_metrics(run)
            last = [r for r in logs if "eff_rank" in r][-1]
            probe = [r for r in logs if "probe_pos_err" in r][-1]
            rows.append(
                {
                    "world": name, "critic": critic, "train_seconds": training_seconds(run, args.batch_size),
                    "std_mean": last["std_mean"], "std_min": last["std_min"], "eff_rank": last["eff_rank"],
                    "critic_value": last["critic"], "probe_pos_err_pct": 100 * probe["probe_pos_err"],
                    "probe_fit_err_pct": 100 * probe["probe_pos_err_fit"],
                    "probe_err_per_object_pct": per_object_error(load_model(run / "model").eval(), data),
                }
            )
            print(f"{name}/{critic}: done", file=sys.stderr)
        if not args.no_baseline:
            rows.append(reference_row(name, data, "untrained", overrides))
        if args.supervised:
            rows.append(reference_row(name, data, "supervised", overrides))
    (work / "results.json").write_text(json.dumps(rows, indent=2))
    latent = JEPAConfig(**overrides).latent_dim
    print(
        f"\n{args.episodes} pixel episodes per world, {args.steps} steps x {args.batch_size} windows of "
        f"{args.window}, {args.threads} thread(s), JEPA overrides {args.jepa}; probe error on held-out "
        "episodes, % of arena width.\n"
    )
    print(f"| world | critic | train (s) | probe error | on its own frames | per object | eff. rank (of {latent}) | std mean | std min | critic value |")
    print("| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        per_object = " / ".join(f"{e:.1f}" for e in r["probe_err_per_object_pct"])
        trained = (
            f"| {r['eff_rank']:.1f} | {r['std_mean']:.3f} | {r['std_min']:.3f} | {r['critic_value']:.4g} |"
            if "eff_rank" in r
            else "| | | | |"
        )
        seconds = f"{r['train_seconds']:.0f}" if "train_seconds" in r else "—"
        print(
            f"| {r['world']} | {r['critic']} | {seconds} | {r['probe_pos_err_pct']:.2f}% | "
            f"{r['probe_fit_err_pct']:.2f}% | {per_object} {trained}"
        )


if __name__ == "__main__":
    main()
