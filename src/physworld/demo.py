"""``physworld demo``: the main job, from nothing to one report, on 2 CPU cores.

collect (every world, pictured) -> train JEPA on Balls and on Push -> evaluate the Balls model
against the engine (accuracy, baselines, speed, OOD) -> plan on Push with the Push model ->
``report.html``. Every stage reuses the public API the subcommands use; nothing is demo-only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from physworld.data import CollectConfig, EpisodeStore, collect
from physworld.eval import EvalConfig, html, run_eval
from physworld.eval.planning import PlanConfig, evaluate_planning
from physworld.eval.report import write_json
from physworld.models import STATE_JEPA, JEPAConfig, load_model
from physworld.runtime import set_threads
from physworld.train import TrainConfig, train


@dataclass(frozen=True)
class Budget:
    """How much of everything one demo run does."""

    picture_episodes: int  # per world, for the pictures
    balls_episodes: int
    push_episodes: int
    balls_steps: int  # JEPA optimizer steps
    push_steps: int
    probe_steps: int
    eval_episodes: int
    plan_episodes: int


FULL = Budget(8, 300, 300, 1500, 1500, 1000, 100, 20)
QUICK = Budget(3, 40, 40, 100, 100, 200, 10, 2)



@dataclass
class DemoConfig:
    """Collect, train JEPA, evaluate against the engine, plan, and write report.html."""

    out: Path = Path("physworld-demo")
    """Folder for the data sets, checkpoints, results.json and report.html."""
    quick: bool = False
    """A reduced run for a first look (target: under 3 minutes; the full run targets 15)."""
    obs: str = "state"
    """Observation kind the world models learn from: state (fast, the accuracy target) or pixels."""
    threads: int = 2
    """CPU threads for PyTorch and the BLAS pools."""
    seed: int = 0
    """Seed for every stage."""


def world_name(world_id: str) -> str:
    return world_id.split("/")[-1].removesuffix("-v0").lower()


def picture_every_world(cfg: DemoConfig, budget: Budget) -> list[str]:
    """Collect a few pixel episodes from every world; a strip, an animation and a table each."""
    from physworld.worlds import WORLDS

    sections = []
    for world_id, description in WORLDS.items():
        policy = "mixed" if hasattr(gym.make(world_id).unwrapped, "expert_action") else "random"
        start = time.perf_counter()
        path = collect(
            CollectConfig(
                world=world_id, episodes=budget.picture_episodes, policy=policy, seed=cfg.seed,
                out=cfg.out / "data" / f"{world_name(world_id)}-pictures", overwrite=True,
            )
        )
        seconds = time.perf_counter() - start
        store = EpisodeStore.open(path, world=world_id)
        first = store.episodes[0]
        strip = np.concatenate([first.obs[t] for t in np.linspace(0, len(first), 6).astype(int)], axis=1)
        sections.append(
            html.section(
                world_id,
                html.paragraph(description),
                html.image_tag(html.png(strip, scale=2), "episode 0, six frames across the episode"),
                html.image_tag(html.gif(first.obs, fps=15), "episode 0", mime="image/gif"),
                html.table(
                    ["episodes", "transitions", "policy", "collection time (s)", "transitions/s"],
                    [[len(store.episodes), store.total_steps, policy, seconds, store.total_steps / seconds]],
                ),
            )
        )
    return sections


def train_world_model(cfg: DemoConfig, world_id: str, episodes: int, steps: int, budget: Budget, policy: str) -> Path:
    """Collect a training set and train JEPA on it; returns the checkpoint folder."""
    name = world_name(world_id)
    data = collect(
        CollectConfig(
            world=world_id, episodes=episodes, policy=policy, obs=cfg.obs, seed=cfg.seed,
            out=cfg.out / "data" / name, overwrite=True,
        )
    )
    run = cfg.out / "runs" / f"{name}-jepa"
    return train(
        TrainConfig(
            data=str(data), model="jepa", steps=steps, out=str(run), threads=cfg.threads, seed=cfg.seed,
            probe_steps=budget.probe_steps, warmup=min(100, steps // 10), window=10, batch_size=64,
            jepa=JEPAConfig(**STATE_JEPA),
        )
    )


def demo(cfg: DemoConfig) -> Path:
    set_threads(cfg.threads)
    budget = QUICK if cfg.quick else FULL
    started = time.perf_counter()
    stages = tqdm(total=5, desc="demo", unit="stage", position=0)

    stages.set_postfix_str("collecting and picturing every world")
    sections = [html.section("The worlds")] + picture_every_world(cfg, budget)
    stages.update()

    stages.set_postfix_str("training JEPA on Balls")
    balls = train_world_model(cfg, "physworld/Balls-v0", budget.balls_episodes, budget.balls_steps, budget, "random")
    stages.update()
    stages.set_postfix_str("training JEPA on Push")
    push = train_world_model(cfg, "physworld/Push-v0", budget.push_episodes, budget.push_steps, budget, "mixed")
    stages.update()

    stages.set_postfix_str("evaluating the Balls model against the engine")
    evaluation = run_eval(
        EvalConfig(
            model=balls, episodes=budget.eval_episodes, horizon=30, threads=cfg.threads,
            speed_repeats=1 if cfg.quick else 5, speed_min_seconds=0.05 if cfg.quick else 0.2,
            animations=1 if cfg.quick else 3, out=cfg.out / "eval",
        ),
        model=load_model(balls),
    )
    stages.update()

    stages.set_postfix_str("planning on Push with the Push model")
    plan_cfg = PlanConfig(
        model=push, episodes=budget.plan_episodes, threads=cfg.threads, out=cfg.out / "plan",
        animations=2 if cfg.quick else 4,
    )
    planning = evaluate_planning(plan_cfg, model=load_model(push))
    stages.update()
    stages.close()

    minutes = (time.perf_counter() - started) / 60
    summary = html.section(
        "Summary",
        html.paragraph(f"Learned simulator (Balls, {cfg.obs}): {evaluation.results['headline']['statement']}"),
        html.paragraph(f"Planning (Push): {planning.results['headline']}."),
        html.paragraph(
            f"Whole demo: {minutes:.1f} minutes on {cfg.threads} threads ({'quick' if cfg.quick else 'full'} budget: "
            f"{budget}).",
            note=True,
        ),
    )
    write_json(cfg.out / "results.json", {"eval": evaluation.results, "plan": planning.results, "minutes": minutes})
    report = html.write_page(
        cfg.out / "report.html", "physworld demo", [summary, *sections, *evaluation.sections, *planning.sections]
    )
    print(f"\nreport: {report.resolve()}\nopen it with: python -m webbrowser file://{report.resolve()}")
    return report

