"""How fast are the ground-truth worlds? Env steps/s in state and pixel mode, single thread,
beside the bare pymunk ``space.step`` rate of the same scene, measured in the same run.

    python benchmarks/worlds.py [--steps 3000] [--repeats 3] [--image-size 64] [--json out.json]

Env rates go through ``gym.make`` (the wrappers users get) with uniform random actions, and
include the resets at episode ends. Each figure is the best of ``--repeats`` timed runs.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # before numpy is imported: one core, comparable numbers
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pymunk  # noqa: E402

import physworld  # noqa: E402, F401  (registers the worlds)

CASES: list[tuple[str, str, dict]] = [
    ("Balls-3", "physworld/Balls-v0", {}),
    ("Balls-10", "physworld/Balls-v0", {"n_balls": 10}),
    # 50 default-size balls would not fit the arena; smaller ones keep it at ~30% covered.
    ("Balls-50", "physworld/Balls-v0", {"n_balls": 50, "radius_range": (0.2, 0.45)}),
    ("Push", "physworld/Push-v0", {}),
]
TARGET = 2000.0  # pixel transitions/s for Balls-3 at 64x64, physics included


def best_of(repeats: int, run, *args) -> float:
    return max(run(*args) for _ in range(repeats))


def env_rate(world: str, kwargs: dict, obs: str, steps: int, image_size: int) -> float:
    """Env steps per second, random actions, resets included."""
    env = gym.make(world, obs=obs, image_size=image_size, **kwargs)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(steps)]
    env.step(actions[0])  # the passive checker's first-step checks stay out of the timing
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def engine_rate(world: str, kwargs: dict, substeps: int) -> float:
    """Bare ``space.step`` calls per second on the same scene (no control, no readout)."""
    env = gym.make(world, obs="state", **kwargs).unwrapped
    env.reset(seed=0)
    space, dt = env.space, env.dt
    start = time.perf_counter()
    for _ in range(substeps):
        space.step(dt)
    return substeps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="env steps per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is kept")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--json", type=str, default=None, help="also write the rows here")
    args = parser.parse_args()

    size = args.image_size
    rows = []
    for name, world, kwargs in CASES:
        probe = gym.make(world, obs="state", **kwargs).unwrapped
        skip = probe.frame_skip
        substep = best_of(args.repeats, engine_rate, world, kwargs, args.steps * skip)
        state = best_of(args.repeats, env_rate, world, kwargs, "state", args.steps, size)
        pixels = best_of(args.repeats, env_rate, world, kwargs, "pixels", args.steps, size)
        rows.append(
            {
                "world": name,
                "objects": probe.n_objects,
                "frame_skip": skip,
                "pymunk_substeps_per_s": substep,
                "pymunk_env_steps_per_s": substep / skip,
                "state_steps_per_s": state,
                "pixel_steps_per_s": pixels,
            }
        )

    print(
        f"\nphysworld worlds, 1 thread, {platform.processor() or platform.machine()}, "
        f"pymunk {pymunk.version}, numpy {np.__version__}, image {size}x{size}, "
        f"best of {args.repeats} x {args.steps} steps\n"
    )
    print(
        "| world | objects | frame_skip | pymunk space.step/s | pymunk only, env steps/s "
        "| state env steps/s | pixel env steps/s | pixel / pymunk only |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['world']} | {r['objects']} | {r['frame_skip']} "
            f"| {r['pymunk_substeps_per_s']:,.0f} | {r['pymunk_env_steps_per_s']:,.0f} "
            f"| {r['state_steps_per_s']:,.0f} | {r['pixel_steps_per_s']:,.0f} "
            f"| {r['pixel_steps_per_s'] / r['pymunk_env_steps_per_s']:.2f} |"
        )
    balls3 = rows[0]["pixel_steps_per_s"]
    verdict = "meets" if balls3 >= TARGET else "MISSES"
    print(
        f"\nBalls-3 pixel transitions/s at {size}x{size}, physics included: {balls3:,.0f} "
        f"({verdict} the {TARGET:,.0f}/s target)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"image_size": size, "target": TARGET, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
