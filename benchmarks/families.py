"""One comparison, three families: JEPA, VAE + MDN-RNN and diffusion on the same data and budget.

    python benchmarks/families.py                                  # Balls and Push, pixels, 1500 steps
    python benchmarks/families.py --worlds balls --families rnn --steps 300   # a quick look

For each world: collect one pixel dataset (reset seeds 0..episodes-1; Balls with the random
policy, Push with the mixed expert/smooth policy, so the block moves), train every family on it
with the same ``TrainConfig`` (steps, batch, window, learning rate, probe budget; the RNN spends
two thirds of its steps on the VAE stage; JEPA is the library's ``PIXEL_JEPA`` recipe unless
``--jepa`` says otherwise, the RNN and diffusion models their library defaults unless ``--rnn`` /
``--diffusion`` do), then score each on the same held-out scenes (seeds from 10_000_000,
random actions) with the eval module's functions:

- **accuracy vs horizon**: fraction of object positions within 5% of the arena of the engine's,
  at steps 1, 10 and the horizon. A single frame shows no velocity, so the scenes start
  ``--context - 1`` steps after the reset and keep those frames as their context
  (``engine_rollout(context=...)``); each model reads its state at step 0 from its own
  ``context_frames`` of them (the table's context column: a JEPA with ``frames=1`` reads one),
  and the constant-velocity baseline starts from the true state there. A second one reads the
  positions and velocities off the last two frames instead (``constant_velocity_from_frames``):
  what a model of pixels could do with straight lines. ``physworld eval`` is the same scoring
  (``model_rollout``), with each model's own context.
- **speed vs the engine**: ``physworld.eval.speed.measure_speed`` at ``--speed-batch``, pixel
  mode (engine step + render vs ``predict`` + ``decode``, or + the probe without a decoder);
- **accuracy by motion** (a second table): at step 10, on the objects still in free flight and on
  those a wall, another object or the action has turned (``accuracy_by_motion``): constant
  velocity is exact on the first and far off on the second, so this says which a model must improve;
- **one-step error** (same table): the mean position error of ``model_one_step``, each step
  predicted from the true frames before it, i.e. the model's per-step precision with none of its
  own errors fed back, beside constant velocity's error at step 1;
- **probe on true frames**: the state probe applied to the engine's own frames at each step (no
  prediction): the share of the error that is the probe's, not the dynamics';
- **training time** (the optimizer steps' wall time, from the loop's samples/s log, so a run
  resumed after an interruption counts once; the probe fit is not included) and
  **parameters** (without the state probe).

Also written: ``WORK/<world>-<family>-strip.png``, the engine's frames (top row) above the
model's (bottom row: decoded or generated frames, or the probe's states drawn by the world's
renderer for a model without a decoder) for the first steps of scene 0; and, with every family's
strip at hand, ``WORK/<world>-families.png``: the engine's row above each family's.
"""

from __future__ import annotations

import argparse
import os
import sys

_threads = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), None)
if _threads is None and "--threads" in sys.argv[:-1]:
    _threads = sys.argv[sys.argv.index("--threads") + 1]
os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = _threads or "2"

import json  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from physworld.data import CollectConfig, collect  # noqa: E402
from physworld.eval.speed import measure_speed  # noqa: E402
from physworld.eval.trajectory import (  # noqa: E402
    ModelRollout,
    Scenes,
    accuracy_by_motion,
    constant_velocity,
    constant_velocity_from_frames,
    copy_last_state,
    engine_rollout,
    model_one_step,
    model_rollout,
    trajectory_metrics,
)
from physworld.models import WorldModel, load_model  # noqa: E402
from physworld.models.diffusion import DiffusionConfig  # noqa: E402
from physworld.models.jepa import PIXEL_JEPA, JEPAConfig  # noqa: E402
from physworld.models.rnn import RNNConfig  # noqa: E402
from physworld.runtime import set_threads  # noqa: E402
from physworld.train import TrainConfig, train, training_seconds  # noqa: E402

WORLDS = {"balls": ("physworld/Balls-v0", "random"), "push": ("physworld/Push-v0", "mixed")}
FAMILIES = ("jepa", "rnn", "diffusion")
EVAL_SEED = 10_000_000


def train_family(family: str, data: Path, out: Path, args: argparse.Namespace) -> WorldModel:
    """Train one family (resuming an interrupted run); a finished run is loaded as it is."""
    if not (out / "train_state" / "state.json").is_file() or _step(out) < args.steps:
        cfg = TrainConfig(
            data=str(data), model=family, out=str(out), steps=args.steps, batch_size=args.batch_size,
            window=args.window, lr=args.lr, threads=args.threads, seed=0, probe_steps=args.probe_steps,
            probe_frames=args.probe_frames, progress=not args.quiet,
            rnn=RNNConfig(**{"vae_steps": 2 * args.steps // 3, **json.loads(args.rnn)}),
            diffusion=DiffusionConfig(**json.loads(args.diffusion)),
            jepa=JEPAConfig(**json.loads(args.jepa)),
        )
        train(cfg)
    return load_model(out / "model").eval()


def _step(out: Path) -> int:
    return json.loads((out / "train_state" / "state.json").read_text())["step"]


def strip(scenes: Scenes, rollout: ModelRollout, steps: int) -> np.ndarray:
    """Engine frames (top) over the model's (bottom) for scene 0, steps 1..``steps``."""
    truth = scenes.obs[0, 1 : steps + 1]
    if rollout.frames is not None:
        frames = rollout.frames[0, :steps]
    else:  # no decoder: the probe's states drawn by the world's renderer
        env = scenes.make_env(0)
        frames = np.stack([env.render_state(s) for s in rollout.states[0, :steps]])
    pad = lambda rows: np.concatenate([np.pad(f, ((2, 2), (2, 2), (0, 0)), constant_values=255) for f in rows], 1)  # noqa: E731
    return np.concatenate([pad(truth), pad(frames)], 0)


def parameters(model: WorldModel) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("probe."))


def evaluate(model: WorldModel, scenes: Scenes, args: argparse.Namespace) -> dict:
    eps = 0.05 * scenes.arena_size
    rollout = model_rollout(model, scenes, batch_size=64, decode=1)
    Image.fromarray(strip(scenes, rollout, args.strip)).save(args.png)
    speed_scenes = replace(scenes, seeds=scenes.seeds[: args.speed_batch], actions=scenes.actions[:, : args.speed_horizon])
    speed = measure_speed(model, speed_scenes, (args.speed_batch,), warmup=1, repeats=3)
    predictions = {
        "model": rollout.states,
        "constant_velocity": constant_velocity(scenes),
        "constant_velocity_from_frames": constant_velocity_from_frames(scenes),
        "copy_last_state": copy_last_state(scenes),
    }
    step = min(10, scenes.horizon)
    return {
        **{name: trajectory_metrics(pred, scenes, eps) for name, pred in predictions.items()},
        "by_motion": {"step": step, **{name: accuracy_by_motion(pred, scenes, eps, step) for name, pred in predictions.items()}},
        "probe_on_truth": trajectory_metrics(rollout.probe_on_truth, scenes, eps),
        "one_step_from_truth": trajectory_metrics(model_one_step(model, scenes, batch_size=64), scenes, eps),
        "context": min(model.context_frames, args.context),
        "speed_pixels": speed["pixels"]["rows"][0],
        "speed_state": speed["state"]["rows"][-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", default="balls,push")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--work", type=Path, default=Path("runs/families"))
    parser.add_argument("--episodes", type=int, default=200, help="training episodes per world")
    parser.add_argument("--steps", type=int, default=1500, help="optimizer steps, every family")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--window", type=int, default=6)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate, every family")
    parser.add_argument("--jepa", default=json.dumps(PIXEL_JEPA), help="JEPAConfig fields as JSON (default: the library's PIXEL_JEPA; '{}': JEPA's defaults)")
    parser.add_argument("--rnn", default="{}", help="RNNConfig fields as JSON (default: the library's; vae_steps: two thirds of --steps)")
    parser.add_argument("--diffusion", default="{}", help="DiffusionConfig fields as JSON (default: the library's)")
    parser.add_argument("--probe-steps", type=int, default=1000)
    parser.add_argument("--probe-frames", type=int, default=2048)
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--horizon", type=int, default=20, help="steps scored after the context")
    parser.add_argument("--context", type=int, default=2, help="real frames a model starts from")
    parser.add_argument("--speed-batch", type=int, default=32)
    parser.add_argument("--speed-horizon", type=int, default=10)
    parser.add_argument("--strip", type=int, default=8, help="steps shown in the PNG strips")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--table-only", action="store_true", help="print the table from WORK's results files (runs made separately, e.g. one world at a time); train and score nothing")
    args = parser.parse_args()
    set_threads(args.threads)
    work = args.work.resolve()
    if args.table_only:
        names = [(w, f) for w in args.worlds.split(",") for f in args.families.split(",")]
        found = [work / f"{w}-{f}-results.json" for w, f in names]
        print_table([json.loads(p.read_text()) for p in found if p.is_file()], args)
        for world in args.worlds.split(","):
            stack_strips(work, world, args.families.split(","))
        return
    rows = []
    for name in args.worlds.split(","):
        world, policy = WORLDS[name]
        data = work / "data" / name
        if not data.exists():
            collect(CollectConfig(world=world, episodes=args.episodes, out=data, obs="pixels", policy=policy, seed=0))
        scenes = None
        for family in args.families.split(","):
            model = train_family(family, data, work / f"{name}-{family}", args)
            seconds = training_seconds(work / f"{name}-{family}", args.batch_size)
            if scenes is None:
                seeds = list(range(EVAL_SEED, EVAL_SEED + args.eval_episodes))
                kwargs = {**model.config.world_kwargs, "obs": "pixels"}
                scenes = engine_rollout(world, kwargs, seeds, args.horizon, "random", args.context)
            args.png = work / f"{name}-{family}-strip.png"
            result = evaluate(model, scenes, args)
            result.update(world=name, family=family, params=parameters(model), train_seconds=seconds)
            (work / f"{name}-{family}-results.json").write_text(json.dumps(result, indent=2))
            rows.append(result)
            print(f"{name}/{family}: done ({seconds:.0f} s training)", file=sys.stderr)
        stack_strips(work, name, args.families.split(","))
    print_table(rows, args)


def stack_strips(work: Path, world: str, families: list[str]) -> None:
    """``WORK/<world>-families.png``: the engine's row, then each family's, from their strips."""
    strips = [np.asarray(Image.open(work / f"{world}-{f}-strip.png")) for f in families if (work / f"{world}-{f}-strip.png").is_file()]
    if strips:
        half = strips[0].shape[0] // 2
        Image.fromarray(np.concatenate([strips[0][:half]] + [s[half:] for s in strips], 0)).save(work / f"{world}-families.png")


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    h = args.horizon
    print(
        f"\nSame pixel data per world ({args.episodes} episodes), same budget ({args.steps} steps x "
        f"{args.batch_size} windows of {args.window}), {args.eval_episodes} held-out scenes, "
        f"accuracy = positions within 5% of the arena; models start from {args.context} real frames "
        f"(context column), the baselines from the true state at the last one; speed at batch "
        f"{args.speed_batch}, {args.threads} thread(s), pixel mode (engine step + render).\n"
    )
    print(
        f"| world | family | params | train (s) | context | acc @1 | acc @10 | acc @{h} | probe on true frames @10 "
        f"| const. velocity @10 / @{h} | const. velocity from frames @10 | copy last @10 / @{h} | model steps/s "
        "| engine steps/s | speed vs engine |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        acc = r["model"]["accuracy_at_step"]
        at = lambda m, k: f"{100 * m['accuracy_at_step'][min(k, h) - 1]:.1f}%"  # noqa: E731
        s = r["speed_pixels"]
        print(
            f"| {r['world']} | {r['family']} | {r['params']:,} | {r['train_seconds']:.0f} | {r['context']} "
            f"| {100 * acc[0]:.1f}% | {at(r['model'], 10)} | {at(r['model'], h)} | {at(r['probe_on_truth'], 10)} "
            f"| {at(r['constant_velocity'], 10)} / {at(r['constant_velocity'], h)} "
            f"| {at(r['constant_velocity_from_frames'], 10) if 'constant_velocity_from_frames' in r else '-'} "
            f"| {at(r['copy_last_state'], 10)} / {at(r['copy_last_state'], h)} "
            f"| {s['model_steps_per_s']:,.0f} | {s['engine_steps_per_s']:,.0f} | {s['speedup_model_over_engine']:.2f}x |"
        )
    split = [r for r in rows if "by_motion" in r]
    if split:
        print(
            f"\nAccuracy at step {split[0]['by_motion']['step']} by what the engine's objects did up to it: still in free flight "
            "(on their t=0 straight line within 1% of the arena) / turned (by a wall, another object "
            "or the action).\n"
        )
        print(
            "Per-step precision: the model's mean position error one step ahead of the true frames "
            "(teacher forcing, averaged over the horizon), against constant velocity's at step 1, "
            "from the state and from the frames (world units).\n"
        )
        print(
            "| world | family | objects in free flight | model free / turned | const. velocity free / turned "
            "| const. velocity from frames free / turned | one-step error: model / const. velocity / from frames |"
        )
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        pair = lambda m: f"{100 * m['free']:.1f}% / {100 * m['turned']:.1f}%"  # noqa: E731
        first = lambda r, name: r[name]["mean_position_error"][0]  # noqa: E731
        for r in split:
            m = r["by_motion"]
            one = np.mean(r["one_step_from_truth"]["mean_position_error"]) if "one_step_from_truth" in r else float("nan")
            print(
                f"| {r['world']} | {r['family']} | {100 * m['model']['free_share']:.1f}% | {pair(m['model'])} "
                f"| {pair(m['constant_velocity'])} | {pair(m['constant_velocity_from_frames'])} "
                f"| {one:.3f} / {first(r, 'constant_velocity'):.3f} / {first(r, 'constant_velocity_from_frames'):.3f} |"
            )


if __name__ == "__main__":
    main()
