"""``physworld eval``: score a model against the engine on held-out scenes, in distribution and
out of it, time both side by side, and write ``results.json`` + a self-contained ``report.html``.

    physworld eval runs/balls-jepa --world physworld/Balls-v0 --episodes 200 --horizon 30 --out reports/balls

``run_eval(cfg, model)`` returns ``(results, html_sections)`` for the demo's own report.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import gymnasium as gym

from physworld.data.collect import Policy, parse_world_kwargs
from physworld.eval import html
from physworld.eval.job import ModelJobConfig
from physworld.eval.report import (
    animation_section,
    report_steps,
    results_sections,
    versions,
    write_json,
)
from physworld.eval.speed import measure_speed, speedup
from physworld.eval.trajectory import (
    DESCRIPTIONS,
    ModelRollout,
    Scenes,
    engine_rollout,
    has_decoder,
    score_all,
)
from physworld.models import WorldModel, load_model
from physworld.runtime import pick_device, set_threads


@dataclass
class EvalConfig(ModelJobConfig):
    """Score a trained model against the physics engine: accuracy, baselines, speed, OOD."""

    obs: Literal["pixels", "state"] | None = None
    """Observation kind, pixels or state (None: the model's own). Must match the model's."""
    episodes: int = 200
    """Held-out scenes (initial conditions + action sequences) per split."""
    horizon: int = 30
    """Open-loop steps predicted from the first observation."""
    epsilon: float = 0.05
    """A predicted position is accurate within epsilon x arena width of the engine's."""
    seed: int = 10_000_000
    """Scene i is reset with seed + i; far from collection seeds (0, 1, ...), so held out."""
    policy: Policy = "random"
    """Policy that draws the action sequences (seeded per scene)."""
    ood: bool = True
    """Also score the out-of-distribution split."""
    ood_world_kwargs: str = ""
    """OOD world keywords as JSON (empty: faster, heavier, larger than the training ranges)."""
    speed: bool = True
    """Time engine and model side by side."""
    speed_batches: tuple[int, ...] = (1, 256)
    """Batch sizes timed (engine: envs stepped in a loop; model: one predict call)."""
    speed_repeats: int = 5
    """Timings per figure; the median is reported."""
    speed_warmup: int = 2
    """Untimed calls before timing."""
    speed_min_seconds: float = 0.2
    """Shortest single timing (calls are batched up to it, so the clock's resolution is moot)."""
    animations: int = 3
    """Scenes animated engine vs model in the report."""
    batch_size: int = 256
    """Scenes per model call while scoring."""
    out: Path = Path("reports/eval")
    """Folder for results.json and report.html."""


class Evaluation(NamedTuple):
    results: dict[str, Any]
    sections: list[str]  # HTML sections, for physworld.eval.html.write_page or the demo's page


# --- checks -------------------------------------------------------------------------------------


def check_config(cfg: EvalConfig) -> None:
    for name, value, low in (("episodes", cfg.episodes, 1), ("horizon", cfg.horizon, 1), ("speed_repeats", cfg.speed_repeats, 1)):
        if value < low:
            raise ValueError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")
    if not 0 < cfg.epsilon <= 1:
        raise ValueError(f"--epsilon is a fraction of the arena width in (0, 1], got {cfg.epsilon}")
    if not cfg.speed_batches or min(cfg.speed_batches) < 1:
        raise ValueError(f"--speed-batches must be positive integers, got {cfg.speed_batches}")
    if cfg.obs not in (None, "pixels", "state"):
        raise ValueError(f"--obs must be pixels or state, got {cfg.obs!r}")


def model_folder(path: Path) -> Path:
    """A run folder (``out`` of ``physworld train``) resolves to its ``model/`` checkpoint."""
    return path / "model" if not (path / "config.json").exists() and (path / "model").is_dir() else path


def check_model(model: WorldModel, cfg: EvalConfig) -> None:
    """Refuse a model that cannot be scored as asked, naming what differs."""
    c = model.config
    if not c.world:
        raise ValueError("the model does not record the world it was trained on (config.world is empty)")
    if c.world not in gym.registry:
        raise ValueError(f"the model was trained on {c.world!r}, which is not a registered world")
    if cfg.world is not None and cfg.world != c.world:
        raise ValueError(f"the model was trained on {c.world!r}, not on {cfg.world!r}: evaluate it on its own world")
    if cfg.obs is not None and cfg.obs != c.obs_kind:
        raise ValueError(f"the model was trained on {c.obs_kind!r} observations, not {cfg.obs!r}")
    probe = getattr(model, "probe", None)
    if probe is None or not bool(getattr(probe, "fitted", True)):
        raise ValueError(
            "the model has no fitted state probe, so its latents cannot be read as object states: "
            "fit one with physworld.models.probe.fit_probe (physworld train --probe-steps > 0)"
        )


def world_kwargs(model: WorldModel) -> dict[str, Any]:
    return {**model.config.world_kwargs, "obs": model.config.obs_kind}


def state_dim(world: str, kwargs: dict[str, Any]) -> int:
    env = gym.make(world, **kwargs).unwrapped
    return env.n_objects * len(env.STATE_FIELDS)


def training_seeds(path: Path) -> tuple[int, int] | None:
    """``[first, end)`` reset seeds of the training data, read from the run's train state."""
    state = path.parent / "train_state" / "state.json"
    try:
        data = Path(json.loads(state.read_text())["train_config"]["data"])
        meta = json.loads((data / "metadata.json").read_text())["physworld"]
        return int(meta["seed"]), int(meta["seed"]) + int(meta["episodes"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


# --- the out-of-distribution split ----------------------------------------------------------------


def _beyond(low_high: tuple[float, float], factor: float, cap: float) -> tuple[float, float]:
    """A range just above the training range: ``(high, min(factor * high, cap))``."""
    high = low_high[1]
    return (high, max(high, min(factor * high, cap)))


def balls_ood(env: gym.Env) -> tuple[dict[str, Any], list[str]]:
    radius_cap = min(env.arena_size / 4, 0.99 * math.sqrt(0.35 * env.arena_size**2 / (env.n_objects * math.pi)))
    kwargs = {
        "speed_range": _beyond(env.speed_range, 2.0, env.max_speed),
        "density_range": (2 * env.density_range[1], 4 * env.density_range[1]),
        "radius_range": _beyond(env.radius_range, 1.25, radius_cap),
    }
    changes = [
        f"faster: speed {env.speed_range} -> {kwargs['speed_range']}",
        f"heavier (and unequal densities): density {env.density_range} -> {kwargs['density_range']}",
        f"larger: radius {env.radius_range} -> {kwargs['radius_range']}",
    ]
    return kwargs, changes


def push_ood(env: gym.Env) -> tuple[dict[str, Any], list[str]]:
    kwargs = {
        "agent_speed": min(1.5 * env.agent_speed, env.max_speed),
        "block_mass_range": (2 * env.block_mass_range[1], 4 * env.block_mass_range[1]),
        "block_size_range": _beyond(env.block_size_range, 1.3, 3.0),
    }
    changes = [
        f"faster agent: speed {env.agent_speed} -> {kwargs['agent_speed']}",
        f"heavier block: mass {env.block_mass_range} -> {kwargs['block_mass_range']}",
        f"larger block: size {env.block_size_range} -> {kwargs['block_size_range']}",
    ]
    return kwargs, changes


OOD_RULES = {"physworld/Balls-v0": balls_ood, "physworld/Push-v0": push_ood}


def ood_split(model: WorldModel, cfg: EvalConfig) -> tuple[dict[str, Any] | None, list[str], str]:
    """``(world kwargs, what changed, reason if not applicable)`` of the OOD split."""
    c = model.config
    base = world_kwargs(model)
    if cfg.ood_world_kwargs:
        extra = parse_world_kwargs(cfg.ood_world_kwargs)
        changes = [f"{k} = {v!r} (given)" for k, v in extra.items()]
    elif c.world in OOD_RULES:
        extra, changes = OOD_RULES[c.world](gym.make(c.world, **base).unwrapped)
    else:
        return None, [], f"no default out-of-distribution ranges for {c.world}; pass --ood-world-kwargs"
    kwargs = {**base, **extra}
    try:
        size = state_dim(c.world, kwargs)
    except (TypeError, ValueError) as err:
        return None, changes, f"the OOD world keywords are invalid: {err}"
    if size != c.state_dim:
        return None, changes, f"these scenes have a state of {size} values but the model's probe reads out {c.state_dim}"
    return kwargs, changes, ""


def more_objects_reason(model: WorldModel) -> str:
    n = model.config.state_dim // 6
    return (
        f"the model reads out a fixed state of {n} objects (state_dim {model.config.state_dim} = {n} x 6, "
        "the most it saw in training); a scene with more objects has no slots in the probe's "
        "output to be scored in, so scenes with more objects are not evaluated"
    )


# --- the evaluation ---------------------------------------------------------------------------------


def split_results(scores: dict[str, dict[str, list[float]]], scenes: Scenes) -> dict[str, Any]:
    return {
        "world_kwargs": scenes.world_kwargs,
        "predictors": {name: {"description": DESCRIPTIONS[name], **m} for name, m in scores.items()},
    }


def score_ood(
    model: WorldModel, cfg: EvalConfig, seeds: list[int], eps: float
) -> tuple[dict[str, Any], Scenes | None, ModelRollout | None]:
    """The OOD split's results (or why it is not applicable), its scenes and the model's rollout."""
    kwargs, changes, reason = ood_split(model, cfg) if cfg.ood else (None, [], "not requested (--no-ood)")
    ood: dict[str, Any] = {"applicable": kwargs is not None, "changes": changes}
    scenes = rollout = None
    if kwargs is not None:
        scenes = engine_rollout(model.config.world, kwargs, seeds, cfg.horizon, cfg.policy, model.context_frames)
        scores, rollout = score_all(model, scenes, eps, cfg.batch_size, decode=min(1, cfg.animations))
        ood.update(split_results(scores, scenes))
    else:
        ood["reason"] = reason
    ood["more_objects"] = {"applicable": False, "reason": more_objects_reason(model)}
    return ood, scenes, rollout


def run_eval(cfg: EvalConfig, model: WorldModel | None = None) -> Evaluation:
    """Everything but the files: ``(results, html sections)``. ``model`` skips loading cfg.model."""
    check_config(cfg)
    threads = set_threads(cfg.threads)
    device = pick_device(cfg.device)
    path = model_folder(Path(cfg.model))
    if model is None:
        model = load_model(path, device)
    model = model.to(device).eval()
    if model.config.family == "latent-action":  # no object states to score: Genie's own metrics
        return latent_action_evaluation(cfg, model, path, threads)
    check_model(model, cfg)
    c = model.config
    seeds = list(range(cfg.seed, cfg.seed + cfg.episodes))
    trained = training_seeds(path)
    if trained and trained[0] < seeds[-1] + 1 and seeds[0] < trained[1]:
        raise ValueError(f"evaluation seeds {seeds[0]}..{seeds[-1]} overlap the training data's {trained}; pick another --seed")
    started = time.perf_counter()

    scenes = engine_rollout(c.world, world_kwargs(model), seeds, cfg.horizon, cfg.policy, model.context_frames)
    if scenes.states.shape[-1] != c.state_dim:
        raise ValueError(f"{c.world} scenes have {scenes.states.shape[-1]} state values, the model's probe {c.state_dim}")
    eps = cfg.epsilon * scenes.arena_size
    scores, rollout = score_all(model, scenes, eps, cfg.batch_size, decode=cfg.animations)

    ood, ood_scenes, ood_rollout = score_ood(model, cfg, seeds, eps)

    env = scenes.make_env()
    results: dict[str, Any] = {
        "settings": {
            "model": str(path), "world": c.world, "obs_kind": c.obs_kind, "episodes": cfg.episodes,
            "horizon": cfg.horizon, "epsilon": cfg.epsilon, "epsilon_world_units": eps,
            "arena_size": scenes.arena_size, "seeds": [seeds[0], seeds[-1]], "training_seeds": trained,
            "policy": cfg.policy, "step_seconds": scenes.step_seconds, "dt": env.dt, "frame_skip": env.frame_skip,
            "threads": threads, "device": str(device), "speed_batches": list(cfg.speed_batches),
            "speed_repeats": cfg.speed_repeats, "speed_warmup": cfg.speed_warmup, "speed_min_seconds": cfg.speed_min_seconds,
            "constant_velocity_from": "the velocity in the true state at t=0 (no differencing)",
            "context_frames": model.context_frames,
            "context": "the model reads its state at t=0 from this many real frames, the last one at t=0; "
            "scenes start that many frames minus one after the reset",
            "accuracy": "fraction of (scene, object) pairs whose predicted position is within epsilon_world_units of the engine's",
        },
        "versions": versions(),
        "model": {
            "path": str(path), "family": c.family, "parameters": sum(p.numel() for p in model.parameters()),
            "has_decoder": has_decoder(model, scenes),
            "steps_per_prediction": f"one model step = one env step = {env.frame_skip} physics substeps of {env.dt:.4g} s",
        },
        "steps": list(range(1, cfg.horizon + 1)),
        "in_distribution": split_results(scores, scenes),
        "out_of_distribution": ood,
    }
    if cfg.speed:
        results["speed"] = measure_speed(
            model, scenes, tuple(cfg.speed_batches), cfg.speed_warmup, cfg.speed_repeats, cfg.speed_min_seconds
        )
    results["headline"] = headline(results)
    results["seconds"] = time.perf_counter() - started

    sections = results_sections(results)
    if cfg.animations:
        sections.append(animation_section("Engine vs model, in distribution", scenes, rollout, cfg.animations))
        if ood_scenes is not None and ood_rollout is not None:
            sections.append(animation_section("Engine vs model, out of distribution", ood_scenes, ood_rollout, 1))
    return Evaluation(results, sections)


def latent_action_evaluation(cfg: EvalConfig, model: WorldModel, path: Path, threads: int) -> Evaluation:
    """``physworld eval`` for the latent-action family: ΔtPSNR, action probes, codebook, frames."""
    from physworld.eval.latent_action import evaluate_on_fresh_episodes, latent_action_section

    if cfg.world is not None and cfg.world != model.config.world:
        raise ValueError(f"the model was trained on {model.config.world!r}, not on {cfg.world!r}: evaluate it on its own world")
    started = time.perf_counter()
    metrics = evaluate_on_fresh_episodes(model, cfg.episodes, cfg.seed, Path(cfg.out) / "held-out-episodes")
    results = {
        "model": {"path": str(path), "family": model.config.family},
        "settings": {"world": model.config.world, "episodes": cfg.episodes, "seed": cfg.seed, "threads": threads},
        "latent_action": metrics,
        "headline": {"statement": (
            f"ΔtPSNR {metrics['delta_psnr']:.2f} dB; action probe {100 * metrics['probe_lookup_acc']:.1f}% (lookup table), "
            f"{100 * metrics['probe_linear_acc']:.1f}% (linear); {metrics['codes_used']:.0f} codes used."
        )},
        "versions": versions(),
        "seconds": time.perf_counter() - started,
    }
    return Evaluation(results, [latent_action_section(metrics)])


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The claim, in numbers measured in this run: accuracy at steps 1/10/30 and speed-ups."""
    s = results["settings"]
    acc = results["in_distribution"]["predictors"]["model"]["accuracy_at_step"]
    out: dict[str, Any] = {"model_accuracy_at_step": {str(k): acc[k - 1] for k in report_steps(s["horizon"])}}
    at = min(10, s["horizon"])
    statement = (
        f"{100 * acc[at - 1]:.1f}% of object positions within {s['epsilon_world_units']:.3g} world units "
        f"of the engine's at step {at}"
    )
    if "speed" in results:
        big = max(s["speed_batches"])
        for mode in ("state", "pixels"):
            out[f"speedup_{mode}_batch_{big}"] = speedup(results["speed"], mode, big)
        statement += (
            f", at {out[f'speedup_state_batch_{big}']:.2f}x the engine's env steps/s in state mode (predict) "
            f"and {out[f'speedup_pixels_batch_{big}']:.2f}x in pixel mode ({results['speed']['pixels']['rows'][-1]['model']} "
            "vs step + render) "
            f"at batch {big}, {s['threads']} thread(s), measured in this run"
        )
    out["statement"] = statement + "."
    return out


def evaluate(cfg: EvalConfig) -> Path:
    """Run the evaluation; write ``out/results.json`` and ``out/report.html``; return the report."""
    results, sections = run_eval(cfg)
    out = Path(cfg.out)
    write_json(out / "results.json", results)
    title = f"physworld evaluation: {results['settings']['world']}, {results['model']['path']}"
    report = html.write_page(out / "report.html", title, sections)
    print(results["headline"]["statement"])
    return report
