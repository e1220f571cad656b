"""Engine vs model speed, measured side by side in one process at one thread count.

The unit is the *env step*: one engine step runs ``frame_skip`` physics substeps of ``dt``
seconds; one model step predicts one env step (the model was trained on env steps, so it
skips the same substeps). Batching means what it means in practice for each:

- engine, batch B: B independent environments stepped one after another in a loop (pymunk is
  single-threaded Python; that is how the engine is used);
- model, batch B: one ``predict`` call on a batch of B latents over the horizon.

``state`` mode times the engine's ``step`` in state observation mode against the model's
``predict`` plus the probe readout (the model's states; ``predict`` alone is also reported);
``pixels`` mode times the engine's step with rendering against ``predict`` plus ``decode``,
or, for a model without a decoder, ``predict`` plus the probe readout (said in the results).
Every figure is the median over repeats after warm-up calls.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from physworld.eval.trajectory import Scenes, has_decoder, make_world, model_obs
from physworld.models import WorldModel


def interleaved_rates(
    fns: dict[str, tuple[Callable[[], object], int]],
    warmup: int = 2,
    repeats: int = 5,
    min_seconds: float = 0.2,
) -> dict[str, float]:
    """Median steps/s of each ``name: (fn, steps per call)``, timed in turn within every repeat
    (so a change in machine load hits all of them alike), each timing at least ``min_seconds``
    long (calls are batched until it is), after ``warmup`` untimed calls."""
    numbers = {}
    for name, (fn, _) in fns.items():
        for _ in range(warmup):
            fn()
        numbers[name] = 1
        while _timed(fn, numbers[name]) < min_seconds:
            numbers[name] *= 2
    timings: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, (fn, _) in fns.items():
            timings[name].append(_timed(fn, numbers[name]) / numbers[name])
    return {name: steps / statistics.median(timings[name]) for name, (_, steps) in fns.items()}


def _timed(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return time.perf_counter() - start


def steps_per_second(
    fn: Callable[[], object], steps_per_call: int, warmup: int = 2, repeats: int = 5, min_seconds: float = 0.2
) -> float:
    """Median steps/s of one callable (see :func:`interleaved_rates`)."""
    return interleaved_rates({"fn": (fn, steps_per_call)}, warmup, repeats, min_seconds)["fn"]


def tile(x: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` rows of ``x`` repeated as often as needed."""
    return x[np.arange(n) % len(x)]


def engine_stepper(scenes: Scenes, obs: str, batch: int) -> Callable[[], None]:
    """Step ``batch`` envs (the scenes' seeds and actions) over the horizon, one after another."""
    kwargs = {**scenes.world_kwargs, "obs": obs}
    envs = [make_world(scenes.world, kwargs, scenes.horizon) for _ in range(batch)]
    for env, seed in zip(envs, tile(np.asarray(scenes.seeds), batch), strict=True):
        env.reset(seed=int(seed))
    actions = tile(scenes.actions, batch)

    def run() -> None:
        for t in range(scenes.horizon):
            for env, action in zip(envs, actions[:, t], strict=True):
                env.step(action)

    return run


def model_stepper(model: WorldModel, scenes: Scenes, batch: int, output: str) -> Callable[[], None]:
    """One ``predict`` over the horizon on ``batch`` encoded first observations, then the
    readout ``output``: "latent" (none), "state" (probe) or "pixels" (decode)."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        z0 = model.encode(model_obs(model, tile(scenes.obs[:, 0], batch)))
    actions = torch.from_numpy(tile(scenes.actions, batch)).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None

    def run() -> None:
        with torch.inference_mode():
            z = model.predict(z0, actions)
            if output == "state":
                model.read_state(z.flatten(0, 1))
            elif output == "pixels":
                model.decode(z.flatten(0, 1))
        sync()

    return run


def measure_speed(
    model: WorldModel,
    scenes: Scenes,
    batches: tuple[int, ...] = (1, 256),
    warmup: int = 2,
    repeats: int = 5,
    min_seconds: float = 0.2,
) -> dict:
    """Engine and model env steps/s for every batch size, in state and pixel mode.

    Each mode holds one row per batch size and model variant: ``{"model": what is timed,
    "engine_steps_per_s", "model_steps_per_s", "speedup_model_over_engine"}``.
    """
    model.eval()
    h, decoder = scenes.horizon, has_decoder(model, scenes)
    image = scenes.make_env().image_size
    # (what the row says was timed, the model's output); engine rows are "engine <mode>"
    pixel_model = ("predict + decode", "pixels") if decoder else ("predict + read_state (no decoder)", "state")
    variants = {"state": [("predict", "latent"), ("predict + read_state", "state")], "pixels": [pixel_model]}
    out: dict = {
        "state": {"engine": "env.step in state mode (pymunk substeps + state readout)", "rows": []},
        "pixels": {"engine": f"env.step in pixel mode (pymunk substeps + render {image}x{image})", "rows": []},
    }
    for b in batches:
        fns = {f"engine {mode}": (engine_stepper(scenes, mode, b), b * h) for mode in variants}
        for output in dict.fromkeys(o for rows in variants.values() for _, o in rows):
            fns[output] = (model_stepper(model, scenes, b, output), b * h)
        rates = interleaved_rates(fns, warmup, repeats, min_seconds)
        for mode, rows in variants.items():
            engine = rates[f"engine {mode}"]
            for what, output in rows:
                out[mode]["rows"].append(
                    {
                        "batch": b,
                        "model": what,
                        "engine_steps_per_s": engine,
                        "model_steps_per_s": rates[output],
                        "speedup_model_over_engine": rates[output] / engine,
                    }
                )
    return out


def speedup(speed: dict, mode: str, batch: int, model: str | None = None) -> float:
    """The speed-up of ``mode``'s first row at ``batch`` (or of the row timing ``model``)."""
    rows = [r for r in speed[mode]["rows"] if r["batch"] == batch and model in (None, r["model"])]
    return rows[0]["speedup_model_over_engine"]
