"""physbench task 5, multi-step manipulation: push two blocks onto two goals, in order, by MPC.

The world is ``physworld/Push-v0`` with ``n_blocks=2``: block A to goal A, then block B to goal B;
an episode succeeds when both blocks sit on their goals at once, within a fixed step budget.
The model plans by model-predictive control (:func:`physworld.plan.mpc.run_mpc`, CEM from
:mod:`physworld.plan`): every step it plans :data:`PLANNER` ``horizon`` steps ahead in its own
imagination, acts once in the engine, and re-plans. The sub-goal is the world's *stage* (the
first block not on its goal, :class:`physworld.worlds.push.Push`): one planner per block, each
scoring only its block (and drawing the agent to the spot behind it), and the controller hands
over when the stage moves on. That bookkeeping reads the stage from the engine, as the goal
itself comes from the engine; everything about motion comes from the model.

The single-block protocol runs the same model and controller on the same scenes with block A
already on its goal (``reset(options={"solved": 1})``): one push of block B, with block A as a
still obstacle. Beside the model: uniform random actions, and the scripted expert acting on the
engine's true state (the oracle row; planning with the engine itself as the model costs ~20 s
per episode here). Copy-last and constant velocity predict a motionless or drifting scene, so
as planning models they never move a block: they are not run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from physworld.eval import html
from physworld.eval.bench.base import (
    BenchConfig,
    BenchTask,
    Row,
    TaskResult,
    TrainBudget,
    register_task,
)
from physworld.eval.planning import summarize
from physworld.models import WorldModel
from physworld.plan import CEMPlanner, ExpertPolicy, Planner, RandomPolicy, run_mpc
from physworld.plan.mpc import Controller, Episode
from physworld.plan.planners import check_probe

WORLD = "physworld/Push-v0"
N_BLOCKS = 2
STEPS = {2: 200, 1: 100}  # step budget by blocks still to push (the world's own episode limit)
EPISODES = {False: 12, True: 6}  # per protocol, by cfg.quick
SEED_BASE = 40_000_000  # episode seeds: SEED_BASE + 100_000 * cfg.seed + i (training uses 0, 1, ...)
PLANNER = {"horizon": 10, "samples": 64, "iterations": 3}  # CEM, physworld plan's defaults


class StagedPlanner:
    """A controller that plans for the current stage's block with that block's own planner.

    ``planners[k]`` scores block ``k`` against goal ``k`` (positions ``2k:2k+2`` of the goal
    vector); the stage of each environment comes from ``envs`` (Push's ``stage``). A planner
    that takes over starts fresh (no warm start from another block's plan).
    """

    def __init__(self, planners: Sequence[Planner], envs: Sequence[gym.Env]):
        self.planners, self.envs = list(planners), list(envs)
        self.active: list[int] = []

    def reset(self, seed: int | None = None) -> None:
        for p in self.planners:
            p.reset(seed)
        self.active = []

    def act(self, obs: Any, goal: Any) -> np.ndarray:
        obs, goal = np.asarray(obs), np.asarray(goal)
        stages = [min(env.unwrapped.stage, len(self.planners) - 1) for env in self.envs[: len(obs)]]
        if stages != self.active:  # a hand-over: the incoming planner forgets any stale plan
            for k in set(stages) - set(self.active):
                self.planners[k].reset()
            self.active = stages
        actions = np.zeros((len(obs), self.planners[0].low.numel()), np.float32)
        for k in sorted(set(stages)):
            idx = [i for i, s in enumerate(stages) if s == k]
            actions[idx] = self.planners[k].act(obs[idx], goal[idx, 2 * k : 2 * k + 2])
        return actions


class StartSolved(gym.Wrapper):
    """Every reset starts the first ``solved`` blocks on their goals (the single-push protocol)."""

    def __init__(self, env: gym.Env, solved: int):
        super().__init__(env)
        self.solved = solved

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        return self.env.reset(seed=seed, options={"solved": self.solved, **(options or {})})


def check_model(model: WorldModel, n_blocks: int = N_BLOCKS) -> None:
    """Refuse models that cannot plan here: another world or block count, other actions, no probe."""
    c = model.config
    if c.world != WORLD or int(c.world_kwargs.get("n_blocks", 1)) != n_blocks:
        raise ValueError(
            f"multi-step manipulation needs a model trained on {WORLD} with n_blocks={n_blocks}, but this one "
            f"was trained on {c.world or 'an unknown world'!r} with {c.world_kwargs} (train one with physworld bench --train)"
        )
    if c.action_dim != 2:
        raise ValueError(f"Push takes 2-D velocity actions; the model was trained with action_dim {c.action_dim}")
    try:
        check_probe(model)
    except ValueError as err:
        raise ValueError(f"planning for block goals reads positions through the state probe: {err}") from None


def make_envs(model: WorldModel, solved: int) -> list[gym.Env]:
    kwargs = {**model.config.world_kwargs, "obs": model.config.obs_kind}
    if model.config.obs_kind == "pixels":
        kwargs["image_size"] = model.config.obs_shape[-1]
    env = gym.make(WORLD, **kwargs)
    return [StartSolved(env, solved) if solved else env]


def controllers(model: WorldModel, envs: list[gym.Env], seed: int) -> dict[str, Controller]:
    planners = [CEMPlanner(model, **PLANNER, objects=[1 + k], seed=seed) for k in range(N_BLOCKS)]
    return {
        "model": StagedPlanner(planners, envs),
        "random": RandomPolicy(envs[0].action_space, seed),
        "expert": ExpertPolicy(envs),
    }


@register_task
class ManipulationTask(BenchTask):
    name = "manipulation"
    title = "Multi-step manipulation (two-block Push by MPC)"
    world = WORLD
    world_kwargs = {"n_blocks": N_BLOCKS, "max_steps": STEPS[2]}
    reference = "No published figure exists for two-block Push on this world; none is quoted."
    target = ">= 75% two-block success within 200 steps (CEM, 1 thread)"

    def budget(self, quick: bool) -> TrainBudget:
        """Half scripted-expert episodes (noisy), half smooth random ones ("mixed"): random actions
        alone rarely move a block far, and planning needs the model to know pushing. The full
        budget doubles the state preset's latent and predictor and trains 12,000 steps: at 32 /
        96 and 4,000 steps the model imagined the second block's pushes too poorly, and the planner
        drove it into walls (two-block 50%, README physbench)."""
        if quick:
            return TrainBudget(episodes=300, steps=1200, policy="mixed", probe_steps=500)
        return TrainBudget(episodes=1200, steps=12000, policy="mixed", probe_steps=1000,
                           extra={"latent_dim": 64, "predictor_width": 192})

    def run(self, model: WorldModel, cfg: BenchConfig) -> TaskResult:
        check_model(model)
        model.eval()
        n = EPISODES[cfg.quick]
        seeds = list(range(SEED_BASE + 100_000 * cfg.seed, SEED_BASE + 100_000 * cfg.seed + n))
        runs: dict[str, dict[str, list[Episode]]] = {}
        seconds: dict[str, float] = {}
        protocols = {"two-block": 0, "single-block": N_BLOCKS - 1}
        with tqdm(total=3 * n * len(protocols), desc="manipulation: episodes", leave=False) as bar:
            for protocol, solved in protocols.items():
                envs = make_envs(model, solved)
                steps = STEPS[N_BLOCKS - solved]
                runs[protocol] = {}
                for who, controller in controllers(model, envs, cfg.seed).items():
                    tick = time.perf_counter()
                    runs[protocol][who] = run_mpc(
                        envs, controller, seeds, steps, objects=tuple(range(1, N_BLOCKS + 1)),
                        progress=lambda _: bar.update(1),
                    )
                    seconds[f"{protocol}/{who}"] = time.perf_counter() - tick
                for env in envs:
                    env.close()
        details: dict[str, Any] = {
            "episodes": n, "seeds": [seeds[0], seeds[-1]], "planner": {"name": "cem", **PLANNER},
            "step_budget": {p: STEPS[N_BLOCKS - s] for p, s in protocols.items()},
            "seconds": seconds, "quick": cfg.quick,
        }
        for protocol, by_who in runs.items():
            details[protocol] = {who: summarize(eps, timed=who == "model") for who, eps in by_who.items()}
            for r in details[protocol].values():
                r.pop("episodes")
        rows = self._rows(details, model)
        sections = [self._section(details), self._animations(runs, model)]
        return TaskResult(
            task=self.name, metric="success rate (%)", rows=rows, reference=self.reference, target=self.target,
            details=details, sections=sections,
        )

    def _rows(self, d: dict[str, Any], model: WorldModel) -> list[Row]:
        names = {
            "model": (f"{model.config.family or 'model'} + CEM (MPC)", "model"),
            "random": ("random actions", "baseline"),
            "expert": ("scripted expert (engine state)", "oracle"),
        }
        rows = []
        for who, (label, kind) in names.items():
            for protocol in ("two-block", "single-block"):
                r = d[protocol][who]
                note = f"{d['episodes']} episodes, {d['step_budget'][protocol]} steps"
                if who == "model":
                    note += f"; {r['plan_ms_median']:.0f} ms per action (median), p95 {r['plan_ms_p95']:.0f} ms"
                rows.append(Row(f"{label}, {protocol}", 100 * r["success_rate"], kind, note))
        return rows

    def _section(self, d: dict[str, Any]) -> str:
        rows = []
        for protocol in ("two-block", "single-block"):
            for who, r in d[protocol].items():
                ms = f"{r['plan_ms_median']:.1f} / {r['plan_ms_p95']:.1f}" if "plan_ms_median" in r else "-"
                steps = r["steps_to_success_median"]
                rows.append([protocol, who, f"{100 * r['success_rate']:.0f}%", r["final_distance_mean"],
                             "-" if steps is None else steps, ms])
        intro = html.paragraph(
            f"MPC with CEM ({PLANNER['samples']} samples x {PLANNER['iterations']} iterations, horizon "
            f"{PLANNER['horizon']}), one planning call per real step; {d['episodes']} held-out scenes per protocol. "
            "Two-block: both blocks on their goals, block A first. Single-block: the same scenes with block A "
            "starting on its goal. Final distance: summed block-to-goal distance (world units)."
        )
        return html.section(
            self.title, intro,
            html.table(["protocol", "controller", "success", "final distance", "steps to success (median)",
                        "planning ms per action (median / p95)"], rows),
        )

    def _animations(self, runs: dict[str, dict[str, list[Episode]]], model: WorldModel) -> str:
        """The first few two-block episodes of the model's MPC, drawn from the engine's states."""
        env = gym.make(WORLD, **{**model.config.world_kwargs, "obs": "state"}).unwrapped
        figures = []
        for ep in runs["two-block"]["model"][:3]:
            env.reset(seed=ep.seed)
            frames = [env.render_state(s) for s in ep.states[::2]]
            caption = f"seed {ep.seed}: {'success' if ep.success else 'failure'} in {ep.steps} steps"
            figures.append(html.image_tag(html.gif(frames, fps=10, scale=2), caption, mime="image/gif"))
        env.close()
        return html.section("Two-block Push: the model's MPC episodes", *figures)
