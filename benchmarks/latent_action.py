"""Genie at small scale: learn latent actions from Platformer video, score them, play them.

    python benchmarks/latent_action.py [--steps 1200] [--episodes 150] [--threads 2] \\
        [--work /tmp/physworld-bench/latent-action] [--gif docs/play.gif] [--json results.json]

1. collect Platformer episodes with the scripted explorer (the true actions are stored, and
   read only by the metrics below);
2. train ``--model latent-action`` with the shared loop (``physworld.train.fit``), timing it;
3. score it on held-out episodes: ΔtPSNR (t = 4), the action probe (lookup table fitted on 200
   labelled transitions; linear probe), codebook usage / perplexity, next-frame PSNR / SSIM;
   and, as an extra figure beside the probe (never instead of it), the probe's ceiling: the
   engine replays the held-out episodes and tries every move at every step, to count the moves
   no one could tell apart from the frames (``move_ceiling``);
4. time the play server's per-frame work (model step + PNG encode) and write a GIF of a
   scripted play session beside the engine given the same moves.

Targets (printed with the measured figures): ΔtPSNR > 1 dB, probe accuracy >= 90%, play >= 10
fps, training <= ~10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Genie at small scale on the Platformer: train, score, play."
    )
    p.add_argument("--work", type=Path, default=Path("/tmp/physworld-bench/latent-action"))
    p.add_argument("--episodes", type=int, default=150, help="collected episodes (10%% held out)")
    p.add_argument("--episode-steps", type=int, default=100)
    p.add_argument("--steps", type=int, default=1200, help="training steps (the default budget)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per step")
    p.add_argument("--window", type=int, default=4, help="transitions per window")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--fresh", action="store_true", help="re-collect and re-train even if outputs exist"
    )
    p.add_argument("--gif", type=Path, default=Path("docs/play.gif"))
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args()


ARGS = parse() if __name__ == "__main__" else None
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads if ARGS else 2)  # before numpy / torch load
os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"]

import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from physworld.data import CollectConfig, EpisodeStore, Windows, collect  # noqa: E402
from physworld.eval import html  # noqa: E402
from physworld.eval.latent_action import evaluate_latent_action  # noqa: E402
from physworld.models.latent_action import LatentAction, LatentActionConfig  # noqa: E402
from physworld.runtime import seed_everything, set_threads  # noqa: E402
from physworld.serve.app import Session  # noqa: E402
from physworld.train import TrainConfig, fit  # noqa: E402
from physworld.train.loop import data_fields  # noqa: E402
from physworld.worlds.platformer import ACTION_NAMES, Platformer, move_ceiling  # noqa: E402

WORLD = "physworld/Platformer-v0"
# A scripted play session: (move, steps). Keys map to latent actions through the fitted lookup.
SCRIPT = [
    ("right", 6),
    ("jump", 1),
    ("right", 5),
    ("noop", 4),
    ("left", 8),
    ("jump", 1),
    ("noop", 6),
    ("left", 4),
    ("right", 3),
    ("jump", 1),
    ("right", 6),
    ("noop", 5),
]
TARGETS = {"delta_psnr": 1.0, "probe_lookup_acc": 0.9, "play_fps": 10.0, "train_minutes": 10.0}


def collect_data(args: argparse.Namespace) -> tuple[EpisodeStore, float]:
    out = args.work / "data"
    start = time.perf_counter()
    if args.fresh or not (out / "metadata.json").is_file():
        collect(
            CollectConfig(
                world=WORLD,
                episodes=args.episodes,
                out=out,
                policy="expert",
                max_steps=args.episode_steps,
                seed=args.seed,
                num_envs=args.threads,
                overwrite=True,
            )
        )
    return EpisodeStore.open(out, world=WORLD), time.perf_counter() - start


def train_model(args: argparse.Namespace, train: EpisodeStore) -> tuple[LatentAction, float]:
    """Train with the shared loop; a finished run in ``--work`` is reused (with its timing)."""
    run = args.work / "run"
    timing = run / "train_seconds.json"
    if args.fresh:
        shutil.rmtree(run, ignore_errors=True)
    seed_everything(args.seed)
    model = LatentAction(LatentActionConfig(family="latent-action", **data_fields(train.meta)))
    cfg = TrainConfig(
        model="latent-action",
        steps=args.steps,
        batch_size=args.batch_size,
        window=args.window,
        lr=args.lr,
        warmup=100,
        threads=args.threads,
        seed=args.seed,
        out=str(run),
        probe_steps=0,
        log_every=50,
    )
    state = run / "train_state" / "state.json"
    done = (
        state.is_file() and timing.is_file() and json.loads(state.read_text())["step"] >= args.steps
    )
    start = time.perf_counter()
    fit(model, Windows(train, args.window), cfg)  # resumes, or returns at once if already trained
    if done:  # a finished run was reused: report the time it took
        return model.eval(), json.loads(timing.read_text())["seconds"]
    seconds = time.perf_counter() - start
    timing.write_text(json.dumps({"seconds": seconds, "threads": args.threads}))
    return model.eval(), seconds


def play_fps(session: Session, frames: int = 200) -> float:
    """Frames per second of the server's per-frame work: model step + PNG encode."""
    session.reset()
    session.tick(session.idle)
    start = time.perf_counter()
    for i in range(frames):
        session.tick(i % len(session.controls))
    return frames / (time.perf_counter() - start)


def roomy_seed(start: int = 10_000) -> int:
    """The first held-out layout whose character has floor to run on (no box within 2.5 units)."""
    env = Platformer(obs="state")
    for seed in range(start, start + 1000):
        _, info = env.reset(seed=seed)
        s = info["state"].reshape(-1, 6)
        x = s[0, 0]
        boxes_near = [
            abs(bx - x) < 2.5 and by < 1.5 for bx, by in s[1 : 1 + env.params["n_boxes"], :2]
        ]
        if 3.0 < x < 7.0 and not any(boxes_near):
            return seed
    return start


def play_gif(model: LatentAction, seed: int, path: Path) -> dict[str, float]:
    """A scripted session: the engine (left) and the model (right) given the same moves."""
    env = Platformer()
    obs, _ = env.reset(seed=seed)
    session = Session(model, start=obs)
    engine, learned = [obs], [session.frame]
    for move, repeat in SCRIPT:
        code = int(model.action_to_code[list(model.config.action_names).index(move)])
        for _ in range(repeat):
            obs, *_ = env.step(Platformer.one_hot(ACTION_NAMES.index(move)))
            engine.append(obs)
            learned.append(session.step(code))
    gap = np.full((64, 2, 3), 255, np.uint8)
    frames = [np.concatenate([a, gap, b], axis=1) for a, b in zip(engine, learned, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(html.gif(frames, fps=10, scale=2))
    return {
        "gif_frames": float(len(frames)),
        "gif_bytes": float(path.stat().st_size),
        "gif_seed": float(seed),
    }


def main(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    store, collect_s = collect_data(args)
    train, held_out = store.split(0.1, seed=args.seed)
    model, train_s = train_model(args, train)
    cut = model.config.history + 3  # ΔtPSNR at t = 4 from a real history of `history` frames
    start = time.perf_counter()
    results = evaluate_latent_action(
        model, Windows(train, cut), Windows(held_out, cut), seed=args.seed
    )
    eval_s = time.perf_counter() - start
    held_ids = [i for i, e in enumerate(store.episodes) if any(e is h for h in held_out.episodes)]
    ceiling = move_ceiling(
        ((store.meta["seed"] + i, store.episodes[i].actions) for i in held_ids),
        **store.meta["world_kwargs"],
    )
    results.update({f"probe_{k}": v for k, v in ceiling.items()})
    # saved with the fitted action lookup: ready for `physworld play --model WORK/run/model`
    model.save(args.work / "run" / "model")

    env = gym.make(WORLD)
    results["play_fps"] = play_fps(Session(model, env=env))
    results.update(play_gif(model, seed=roomy_seed(), path=args.gif))
    results.update(
        collect_s=collect_s,
        train_s=train_s,
        eval_s=eval_s,
        train_minutes=train_s / 60,
        train_steps=float(args.steps),
        transitions=float(train.total_steps),
    )

    print(f"\ncommand: {' '.join(sys.argv)}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch threads {torch.get_num_threads()}"
    )
    print(
        f"data: {len(train.episodes)} train / {len(held_out.episodes)} held-out episodes "
        f"({train.total_steps} train transitions), collected in {collect_s:.0f} s"
    )
    print(
        f"training: {args.steps} steps x {args.batch_size} windows x {args.window} transitions in {train_s:.0f} s "
        f"({train_s / 60:.1f} min)"
    )
    names = model.config.action_names
    print(
        "lookup (latent -> true move): "
        + ", ".join(
            f"{i}->{names[j] if j >= 0 else '?'}"
            for i, j in enumerate(model.code_to_action.tolist())
        )
    )
    rows = [
        ("ΔtPSNR (t=4) [dB]", results["delta_psnr"], "> 1.0"),
        (
            "  PSNR inferred / random actions",
            f"{results['psnr_inferred']:.2f} / {results['psnr_random']:.2f}",
            "",
        ),
        ("ΔtPSNR (t=16) [dB]", results["delta_psnr_long"], ""),
        (
            "  PSNR inferred / random actions",
            f"{results['psnr_inferred_long']:.2f} / {results['psnr_random_long']:.2f}",
            "",
        ),
        ("action probe, lookup table (200 fit)", results["probe_lookup_acc"], ">= 0.90"),
        *[
            (f"  lookup recall of true {name}", results[f"probe_lookup_recall_{name}"], "")
            for name in ACTION_NAMES
            if f"probe_lookup_recall_{name}" in results
        ],
        ("action probe, linear", results["probe_linear_acc"], ""),
        (
            "  extra: ceiling of any frame classifier (engine)",
            results["probe_ceiling"],
            f"{results['probe_ambiguous']:.1%} of moves look like another",
        ),
        ("  majority-class baseline", results["probe_majority_baseline"], ""),
        (
            "codes used / perplexity (held out)",
            f"{results['codes_used']:.0f} / {results['code_perplexity']:.2f}",
            "",
        ),
        (
            "next frame PSNR / SSIM, inferred action",
            f"{results['next_psnr_inferred']:.2f} / {results['next_ssim_inferred']:.3f}",
            "",
        ),
        (
            "next frame PSNR / SSIM, true action via lookup",
            f"{results['next_psnr_world']:.2f} / {results['next_ssim_world']:.3f}",
            "",
        ),
        (
            "  copy-last-frame PSNR / SSIM",
            f"{results['copy_psnr']:.2f} / {results['copy_ssim']:.3f}",
            "",
        ),
        ("play: step + PNG encode [fps]", results["play_fps"], ">= 10"),
        ("training wall time [min]", results["train_minutes"], "<= ~10"),
        (
            f"GIF {args.gif}",
            f"{results['gif_bytes'] / 1024:.0f} kB, {results['gif_frames']:.0f} frames",
            "< 1 MB",
        ),
    ]
    for name, value, target in rows:
        shown = f"{value:.3f}" if isinstance(value, float) else value
        print(f"  {name:<48} {shown:>16}   {target}")
    met = {
        "delta_psnr": results["delta_psnr"] > TARGETS["delta_psnr"],
        "probe_lookup_acc": results["probe_lookup_acc"] >= TARGETS["probe_lookup_acc"],
        "play_fps": results["play_fps"] >= TARGETS["play_fps"],
        "train_minutes": results["train_minutes"] <= TARGETS["train_minutes"],
    }
    print("targets: " + ", ".join(f"{k} {'met' if ok else 'NOT met'}" for k, ok in met.items()))
    if args.json:
        args.json.write_text(
            json.dumps({"command": sys.argv, "results": results, "targets_met": met}, indent=2)
        )


if __name__ == "__main__":
    main(ARGS)
