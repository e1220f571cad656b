"""``physworld plan``: plan with a trained model in the real world, beside the random policy
and the scripted expert on the same goals, and write ``results.json`` + ``report.html``.

    physworld plan runs/push-jepa --world physworld/Push-v0 --episodes 50 --planner cem --out reports/push-plan

Reported per controller: success rate within the step budget, final distance to the goal, steps
to success; for the planner also the wall time of every planning call (median and p95).
:func:`evaluate_planning` returns ``(results, html sections)`` for the demo's own report.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import gymnasium as gym
import numpy as np
import tyro

from physworld.eval import html
from physworld.eval.job import ModelJobConfig
from physworld.eval.report import versions, write_json
from physworld.models import WorldModel
from physworld.plan import ExpertPolicy, RandomPolicy, load_planning_model, make_planner, run_mpc
from physworld.plan.mpc import Controller, Episode
from physworld.plan.planners import object_indices
from physworld.runtime import pick_device, set_threads


@dataclass
class PlanConfig(ModelJobConfig):
    """Plan with a trained model (MPC in the real world) and score it against random and expert."""

    episodes: int = 50
    """Goals (episodes) per controller; episode i is reset with seed + i."""
    planner: Literal["cem", "mppi", "gradient"] = "cem"
    """Planner: cross-entropy method, MPPI, or Adam on the actions through the predictor."""
    goal: Literal["state", "obs"] = "state"
    """Goal as a ground-truth state read through the probe (Push: the block's goal position), or as
    an observation of the goal scene compared in latent space."""
    horizon: int = 10
    """Planning horizon (model steps)."""
    samples: int | None = None
    """Candidate sequences per iteration (gradient planner: parallel restarts). None: the planner's
    default (CEM/MPPI 64, gradient 8)."""
    iterations: int | None = None
    """Refinement iterations per planning call (gradient planner: Adam steps). None: the planner's
    default (CEM/MPPI 3, gradient 10)."""
    terminal_weight: float = 0.0
    """Extra weight on the last step's cost."""
    approach: float | None = None
    """Weight of the shaping term: the actor's distance to the pushing spot behind the goal objects
    (Push: agent to behind the block). None: the world's default (Push 1.0, else 0)."""
    approach_offset: float | None = None
    """How far behind the goal objects that spot is, in world units. None: the world's default (Push 1.3)."""
    steps: int = 100
    """Step budget per episode (real environment steps)."""
    baselines: bool = True
    """Also run the random policy and the scripted expert (if the world has one) on the same goals."""
    animations: int = 4
    """Episodes animated in the report (successes and failures)."""
    num_envs: int = 1
    """Environments planned for together, in one batched call (1: the latency of one robot)."""
    seed: int = 20_000_000
    """Episode i is reset with seed + i; far from collection seeds (0, 1, ...), so held out."""
    out: Path = Path("reports/plan")
    """Folder for results.json and report.html."""


class Planning(NamedTuple):
    results: dict[str, Any]
    sections: list[str]  # HTML sections, for physworld.eval.html.write_page or the demo's page


def summarize(episodes: list[Episode], timed: bool) -> dict[str, Any]:
    """Success rate, distances, steps to success (and planning times) over episodes."""
    wins = [e.steps for e in episodes if e.success]
    dist = [e.final_distance for e in episodes]
    out: dict[str, Any] = {
        "success_rate": float(np.mean([e.success for e in episodes])),
        "final_distance_mean": float(np.mean(dist)),
        "final_distance_median": float(np.median(dist)),
        "steps_to_success_median": float(np.median(wins)) if wins else None,
        "steps_to_success_mean": float(np.mean(wins)) if wins else None,
        "episodes": [
            {"seed": e.seed, "success": e.success, "steps": e.steps, "final_distance": e.final_distance}
            for e in episodes
        ],
    }
    if timed:
        ms, cpu = (np.concatenate([getattr(e, key) for e in episodes]) for key in ("plan_ms", "plan_cpu_ms"))
        out.update(
            plan_ms_median=float(np.median(ms)), plan_ms_p95=float(np.percentile(ms, 95)), plan_calls=len(ms),
            plan_cpu_ms_median=float(np.median(cpu)),
        )
    return out


def push_goal_observation(env: gym.Env, info: dict[str, Any]) -> np.ndarray:
    """Push's goal as an observation: the block at rest on the goal, the agent just behind it
    (where a push along the start-to-goal line leaves it)."""
    u = env.unwrapped
    state = np.asarray(info["state"], np.float32).reshape(u.n_objects, 6).copy()
    goal = np.asarray(info["goal"], np.float32)
    line = goal - state[1, :2]
    line /= max(float(np.linalg.norm(line)), 1e-6)
    state[:, 2:] = 0
    state[1, :2] = goal
    state[0, :2] = goal - line * (u.params["block_size"] / 2 + u.agent_radius + 0.2)
    state = state.reshape(-1)
    return state if u.obs_mode == "state" else u.render_state(state)


def check(cfg: PlanConfig, model: WorldModel) -> None:
    for name, value in (("episodes", cfg.episodes), ("steps", cfg.steps), ("num_envs", cfg.num_envs)):
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    world = model.config.world
    if cfg.world is not None and cfg.world != world:
        raise ValueError(f"the model was trained on {world!r}, not on {cfg.world!r}: plan in its own world")
    if cfg.goal == "obs" and world != "physworld/Push-v0":
        raise ValueError(f"no rule to picture {world}'s goal as an observation: use --goal state")


def evaluate_planning(cfg: PlanConfig, model: WorldModel | None = None) -> Planning:
    """Everything but the files: ``(results, html sections)``. ``model`` skips loading cfg.model."""
    threads = set_threads(cfg.threads)
    device = pick_device(cfg.device)
    model = (load_planning_model(cfg.model, device) if model is None else model).to(device).eval()
    check(cfg, model)
    c = model.config
    kwargs = {**c.world_kwargs, "obs": c.obs_kind}
    envs = [gym.make(c.world, **kwargs) for _ in range(cfg.num_envs)]
    probe_env = envs[0]
    _, info = probe_env.reset(seed=cfg.seed)
    if "goal" not in info:
        raise ValueError(f"{c.world} has no goal (info['goal']): there is nothing to plan for")
    seeds = list(range(cfg.seed, cfg.seed + cfg.episodes))
    objects = object_indices(model, None)
    goal_fn = push_goal_observation if cfg.goal == "obs" else (lambda env, info: info["goal"])
    search = {k: v for k, v in (("samples", cfg.samples), ("iterations", cfg.iterations)) if v is not None}
    planner = make_planner(
        cfg.planner, model, horizon=cfg.horizon, **search, goal=cfg.goal, terminal_weight=cfg.terminal_weight, approach=cfg.approach,
        approach_offset=cfg.approach_offset, seed=cfg.seed,
    )
    controllers: dict[str, tuple[Controller, Any]] = {cfg.planner: (planner, goal_fn)}
    if cfg.baselines:
        controllers["random"] = (RandomPolicy(probe_env.action_space, cfg.seed), goal_fn)
        if hasattr(probe_env.unwrapped, "expert_action"):
            controllers["expert"] = (ExpertPolicy(envs), goal_fn)
    started = time.perf_counter()
    runs: dict[str, list[Episode]] = {}
    for name, (controller, fn) in controllers.items():
        runs[name] = run_mpc(envs, controller, seeds, cfg.steps, objects=objects, goal_fn=fn)
    results: dict[str, Any] = {
        "settings": {**asdict(cfg), "world": c.world, "obs_kind": c.obs_kind, "threads": threads, "device": str(device),
                     "goal_objects": objects, "arena_size": c.arena_size, "load_average": os.getloadavg(),
                     "samples": planner.samples, "iterations": planner.iterations,
                     "approach": planner.cost.approach, "approach_offset": planner.cost.approach_offset},
        "versions": versions(),
        "controllers": {name: summarize(eps, timed=name == cfg.planner) for name, eps in runs.items()},
        "seconds": time.perf_counter() - started,
    }
    results["headline"] = headline(results, cfg)
    sections = [results_section(results, cfg), animation_section(runs[cfg.planner], envs[0], cfg)]
    for env in envs:
        env.close()
    return Planning(results, sections)


def headline(results: dict[str, Any], cfg: PlanConfig) -> str:
    r = results["controllers"][cfg.planner]
    return (
        f"{cfg.planner.upper()} succeeds in {100 * r['success_rate']:.0f}% of {cfg.episodes} episodes within "
        f"{cfg.steps} steps, at {r['plan_ms_median']:.1f} ms per planning call (median; p95 "
        f"{r['plan_ms_p95']:.1f} ms; {r['plan_cpu_ms_median']:.1f} ms of CPU time) on "
        f"{results['settings']['threads']} threads"
    )


def results_section(results: dict[str, Any], cfg: PlanConfig) -> str:
    rows = []
    for name, r in results["controllers"].items():
        steps = r["steps_to_success_median"]
        rows.append([
            name, f"{100 * r['success_rate']:.0f}%", r["final_distance_mean"], r["final_distance_median"],
            "-" if steps is None else steps,
            f"{r['plan_ms_median']:.1f} / {r['plan_ms_p95']:.1f}" if "plan_ms_median" in r else "-",
            f"{r['plan_cpu_ms_median']:.1f}" if "plan_ms_median" in r else "-",
        ])
    s = results["settings"]
    note = (
        f"{cfg.episodes} goals in {s['world']} (seeds {cfg.seed}..{cfg.seed + cfg.episodes - 1}), step budget "
        f"{cfg.steps}; {cfg.planner} with horizon {cfg.horizon}, {s['samples']} samples x {s['iterations']} "
        f"iterations, {cfg.goal} goal (shaping: approach {s['approach']:g}, offset {s['approach_offset']:g}), "
        f"re-planning every step (warm-started). Distances in world units "
        f"(arena {s['arena_size']:g}); planning time is the wall time of one act() call for "
        f"{cfg.num_envs} environment(s) on {s['threads']} thread(s), device {s['device']}; CPU ms is the "
        f"process CPU time of the call (all threads), which other load on the machine does not inflate. "
        f"Load average at the start: {s['load_average'][0]:.1f}."
    )
    header = [
        "controller", "success", "final dist. (mean)", "final dist. (median)", "steps to success (median)",
        "ms per plan (median / p95)", "CPU ms per plan (median)",
    ]
    return html.section(f"Planning: {cfg.planner}", html.paragraph(results["headline"]), html.table(header, rows), html.paragraph(note, note=True))


def animation_section(episodes: list[Episode], env: gym.Env, cfg: PlanConfig) -> str:
    """A few episodes, successes and failures alike, drawn with the world's own renderer."""
    wins = [e for e in episodes if e.success]
    fails = [e for e in episodes if not e.success]
    half = math.ceil(cfg.animations / 2)
    chosen = fails[: cfg.animations - min(half, len(wins))]
    chosen = wins[: cfg.animations - len(chosen)] + chosen
    figures = []
    for e in chosen:
        env.reset(seed=e.seed)  # the episode's appearance (block size, goal) for render_state
        frames = [env.unwrapped.render_state(s) for s in e.states]
        frames += [frames[-1]] * 5  # linger on the outcome
        what = f"success in {e.steps} steps" if e.success else f"failed: {e.final_distance:.2f} from the goal"
        figures.append(html.image_tag(html.gif(frames, fps=10, scale=3), f"seed {e.seed}: {what}", mime="image/gif"))
    return html.section(f"Planning episodes ({cfg.planner})", *figures)


def run_planning(cfg: PlanConfig) -> Path:
    """Run the evaluation, write ``results.json`` and ``report.html`` into ``cfg.out``; return it."""
    planning = evaluate_planning(cfg)
    write_json(cfg.out / "results.json", planning.results)
    html.write_page(cfg.out / "report.html", f"physworld plan: {cfg.model}", planning.sections)
    print(planning.results["headline"])
    return cfg.out


if __name__ == "__main__":
    run_planning(tyro.cli(PlanConfig))
