"""``physworld demo``: the main job, from nothing to a report, on 2 CPU cores.

Stages: collect a data set from every world and picture it; later stages (train, evaluate,
plan) add their sections to the same report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from physworld.data import CollectConfig, EpisodeStore, collect
from physworld.eval import html
from physworld.runtime import set_threads


@dataclass
class DemoConfig:
    """Run the whole path (collect, and the later stages) and write report.html."""

    out: Path = Path("physworld-demo")
    """Folder for the data sets, checkpoints and report.html."""
    quick: bool = False
    """A reduced run (under 3 minutes) for a first look."""
    threads: int = 2
    """CPU threads for PyTorch and the BLAS pools."""
    seed: int = 0
    """Seed for every stage."""


def collect_every_world(cfg: DemoConfig) -> list[str]:
    """Collect a small data set from every world; return the report section for each."""
    from physworld.worlds import WORLDS

    episodes = 8 if cfg.quick else 40
    sections = []
    for world_id, description in WORLDS.items():
        name = world_id.split("/")[-1].removesuffix("-v0").lower()
        policy = "mixed" if hasattr(gym.make(world_id).unwrapped, "expert_action") else "random"
        start = time.perf_counter()
        path = collect(
            CollectConfig(
                world=world_id, episodes=episodes, out=cfg.out / "data" / name, policy=policy,
                seed=cfg.seed, overwrite=True,
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
                html.image_tag(html.gif(first.obs, fps=15), "episode 0"),
                html.table(
                    ["episodes", "transitions", "policy", "collection time (s)", "transitions/s", "folder"],
                    [[len(store.episodes), store.total_steps, policy, seconds, store.total_steps / seconds, str(path)]],
                ),
            )
        )
    return sections


def demo(cfg: DemoConfig) -> Path:
    set_threads(cfg.threads)
    sections = collect_every_world(cfg)
    report = html.write_page(cfg.out / "report.html", "physworld demo", sections)
    print(f"\nreport written to {report.resolve()}\nopen it with: python -m webbrowser file://{report.resolve()}")
    return report
