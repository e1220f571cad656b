"""``physworld demo``: the main job, from nothing to one report, on 2 CPU cores.

collect (every world, pictured) -> train JEPA (or every family in ``--models``) on Balls and
evaluate each against the engine (accuracy, baselines, speed, OOD) -> train JEPA on Push and plan
with it -> ``report.html``. Every stage reuses the public API the subcommands use; nothing is demo-only.
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
from physworld.models import STATE_JEPA, JEPAConfig, RNNConfig, load_model, model_class
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


# Push at 300 episodes / 1,500 steps planned 86% of 50 goals (README, Planning); 600 / 3,000 clears 90%
FULL = Budget(8, 300, 600, 1500, 3000, 1000, 100, 20)
QUICK = Budget(3, 40, 40, 100, 100, 200, 10, 2)



@dataclass
class DemoConfig:
    """Collect, train JEPA, evaluate against the engine, plan, and write report.html."""

    out: Path = Path("physworld-demo")
    """Folder for the data sets, checkpoints, results.json and report.html."""
    quick: bool = False
    """A reduced run for a first look (target: under 3 minutes; the full run targets 15)."""
    obs: str = "state"
    """Observation kind the JEPA models learn from: state (fast, the accuracy target) or pixels."""
    models: str = "jepa"
    """Families trained on Balls and scored against the engine side by side, comma-separated
    (jepa, rnn, diffusion, ...). Families without a state encoder (rnn, diffusion) learn from
    pixels of the same scenes."""
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


PIXEL_FAMILIES = ("rnn", "diffusion", "latent-action")  # families that read frames only


def train_world_model(
    cfg: DemoConfig, world_id: str, episodes: int, steps: int, budget: Budget, policy: str, family: str = "jepa"
) -> Path:
    """Collect a training set (once per observation kind) and train ``family`` on it; returns the
    checkpoint folder."""
    name = world_name(world_id)
    obs = "pixels" if family in PIXEL_FAMILIES else cfg.obs
    data = cfg.out / "data" / f"{name}-{obs}-{episodes}"  # same seed and size: the same data
    if not data.exists():
        collect(
            CollectConfig(world=world_id, episodes=episodes, policy=policy, obs=obs, seed=cfg.seed, out=data)
        )
    return train(
        TrainConfig(
            data=str(data), model=family, steps=steps, out=str(cfg.out / "runs" / f"{name}-{family}"),
            threads=cfg.threads, seed=cfg.seed, probe_steps=budget.probe_steps, warmup=min(100, steps // 10),
            window=10 if family == "jepa" else 6, batch_size=64 if family == "jepa" else 32,
            jepa=JEPAConfig(**STATE_JEPA) if obs == "state" else JEPAConfig(),
            rnn=RNNConfig(vae_steps=2 * steps // 3),  # both stages within the budget
        )
    )


def compare_families(cfg: DemoConfig, budget: Budget, families: list[str]) -> tuple[dict, list[str]]:
    """Train every family on Balls and score each against the engine on the same held-out scenes."""
    results, sections, rows = {}, [], []
    big = 32 if cfg.quick else 256  # the largest batch timed (a diffusion rollout at 256 takes minutes)
    for family in families:
        run = train_world_model(cfg, "physworld/Balls-v0", budget.balls_episodes, budget.balls_steps, budget, "random", family)
        evaluation = run_eval(
            EvalConfig(
                model=run, episodes=budget.eval_episodes, horizon=30, threads=cfg.threads, speed_batches=(1, big),
                speed_repeats=1 if cfg.quick else 5, speed_min_seconds=0.05 if cfg.quick else 0.2,
                animations=1 if cfg.quick else 3, out=cfg.out / "eval" / family,
            ),
            model=load_model(run),
        )
        results[family] = evaluation.results
        acc = evaluation.results["in_distribution"]["predictors"]
        head = evaluation.results["headline"]
        rows.append(
            [family, evaluation.results["settings"]["obs_kind"]]
            + [f"{100 * acc['model']['accuracy_at_step'][k - 1]:.1f}%" for k in (1, 10, 30)]
            + [f"{100 * acc['constant_velocity']['accuracy_at_step'][9]:.1f}%"]
            + [f"{head[f'speedup_{mode}_batch_{big}']:.2f}x" for mode in ("state", "pixels")]
        )
        sections += [html.section(f"Family: {family}")] + evaluation.sections
    table = html.section(
        "Model families on Balls, same scenes",
        html.table(
            ["family", "obs", "acc @1", "acc @10", "acc @30", "constant velocity @10", f"speed vs engine (state, batch {big})", f"speed vs engine (pixels, batch {big})"],
            rows,
        ),
    )
    return results, [table, *sections]


def demo(cfg: DemoConfig) -> Path:
    set_threads(cfg.threads)
    budget = QUICK if cfg.quick else FULL
    started = time.perf_counter()
    families = [f.strip() for f in cfg.models.split(",") if f.strip()]
    if not families:
        raise ValueError("--models names no family (e.g. --models jepa,rnn,diffusion)")
    for family in families:
        model_class(family)  # an unknown name fails here, before any work, with the known names
    stages = tqdm(total=4, desc="demo", unit="stage", position=0)

    stages.set_postfix_str("collecting and picturing every world")
    sections = [html.section("The worlds")] + picture_every_world(cfg, budget)
    stages.update()

    stages.set_postfix_str(f"training {', '.join(families)} on Balls and scoring against the engine")
    evaluations, family_sections = compare_families(cfg, budget, families)
    stages.update()
    stages.set_postfix_str("training JEPA on Push")
    push = train_world_model(cfg, "physworld/Push-v0", budget.push_episodes, budget.push_steps, budget, "mixed")
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
        *(
            html.paragraph(
                f"Learned simulator ({family} on Balls, {result['settings']['obs_kind']}): {result['headline']['statement']}"
            )
            for family, result in evaluations.items()
        ),
        html.paragraph(f"Planning (Push): {planning.results['headline']}."),
        html.paragraph(
            f"Whole demo: {minutes:.1f} minutes on {cfg.threads} threads ({'quick' if cfg.quick else 'full'} budget: "
            f"{budget}).",
            note=True,
        ),
    )
    write_json(
        cfg.out / "results.json",
        {"eval": evaluations[families[0]], "families": evaluations, "plan": planning.results, "minutes": minutes},
    )
    report = html.write_page(
        cfg.out / "report.html", "physworld demo", [summary, *sections, *family_sections, *planning.sections]
    )
    print(f"\nreport: {report.resolve()}\nopen it with: python -m webbrowser file://{report.resolve()}")
    return report

