"""Vectorised data collection from any physworld world into an episode store.

Episode ``i`` is always reset with seed ``seed + i`` and driven by a policy seeded from
``(seed, i)``, so a data set is the same whatever the number of parallel environments.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from physworld.data.store import Episode, EpisodeWriter, stack_infos

Policy = Literal["random", "smooth", "expert", "mixed"]


@dataclass
class CollectConfig:
    """Collect episodes from a world into a Minari dataset folder."""

    world: str = "physworld/Balls-v0"
    """Gymnasium id of the world (see `physworld worlds`)."""
    episodes: int = 200
    """Number of episodes to record."""
    out: Path = Path("data/balls")
    """Dataset folder to write (written as OUT.partial and renamed when complete)."""
    policy: Policy = "random"
    """random: uniform actions; smooth: temporally correlated random actions; expert: the
    world's scripted expert; mixed: per episode, a noisy expert or smooth random actions."""
    obs: Literal["pixels", "state"] = "pixels"
    """Observation kind stored: RGB frames or the state vector (states are always stored too)."""
    seed: int = 0
    """Episode i is reset with seed + i."""
    max_steps: int | None = None
    """Episode length limit (None: the world's default)."""
    num_envs: int = 0
    """Environments stepped in parallel (0: one per CPU core, at most 8)."""
    vector: Literal["async", "sync"] = "async"
    """async runs each environment in its own process; sync runs them in this process."""
    overwrite: bool = False
    """Replace an existing dataset at OUT (only once the new one is complete)."""
    world_kwargs: str = "{}"
    """Extra world keywords as a JSON object, e.g. '{"n_balls": [10, 10], "gravity": [0, -9.8]}'."""


class EpisodePolicy:
    """One episode's action source; seeded per episode so data sets do not depend on batching."""

    def __init__(self, kind: Policy, space: gym.spaces.Box, rng: np.random.Generator):
        self.low, self.high = space.low.astype(np.float32), space.high.astype(np.float32)
        self.rng = rng
        self.kind = kind if kind != "mixed" else ("expert" if rng.random() < 0.5 else "smooth")
        self.noise = 0.3 if kind == "mixed" else 0.0
        self.previous = self._uniform()

    def _uniform(self) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)

    def __call__(self, expert: np.ndarray | None) -> np.ndarray:
        if self.kind == "random":
            action = self._uniform()
        elif self.kind == "smooth":  # Ornstein-Uhlenbeck-like: explores far better than white noise
            action = 0.8 * self.previous + 0.5 * self._uniform()
        else:
            assert expert is not None
            span = (self.high - self.low) / 2
            action = expert + self.noise * span * self.rng.standard_normal(len(span)).astype(np.float32)
        self.previous = np.clip(action, self.low, self.high).astype(np.float32)
        return self.previous


def parse_world_kwargs(text: str | dict[str, Any]) -> dict[str, Any]:
    """World keywords from the command line (JSON) or from Python (a dict)."""
    if isinstance(text, dict):
        return dict(text)
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as err:
        raise ValueError(f"--world-kwargs is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise ValueError(f"--world-kwargs must be a JSON object, got {text!r}")
    return value


def _default_num_envs() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def collect(cfg: CollectConfig) -> Path:
    """Run the collection and return the dataset folder."""
    import physworld  # noqa: F401  (registers the worlds)

    if cfg.episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {cfg.episodes}")
    if cfg.world not in gym.registry:
        known = ", ".join(k for k in gym.registry if k.startswith("physworld/"))
        raise ValueError(f"unknown world {cfg.world!r}; known: {known}")
    world_kwargs = {"obs": cfg.obs, **parse_world_kwargs(cfg.world_kwargs)}
    if cfg.max_steps is not None:
        world_kwargs["max_steps"] = cfg.max_steps
    num_envs = min(cfg.num_envs or _default_num_envs(), cfg.episodes)
    envs = gym.make_vec(
        cfg.world,
        num_envs=num_envs,
        vectorization_mode=cfg.vector,
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.DISABLED},
        **world_kwargs,
    )
    probe = gym.make(cfg.world, **world_kwargs).unwrapped
    if cfg.policy in ("expert", "mixed") and not hasattr(probe, "expert_action"):
        raise ValueError(f"{cfg.world} has no scripted expert; use --policy random or smooth")
    meta = {
        "world": cfg.world,
        "world_kwargs": world_kwargs,
        "obs": cfg.obs,
        "obs_shape": list(probe.observation_space.shape),
        "action_dim": int(np.prod(probe.action_space.shape)),
        "action_low": probe.action_space.low.tolist(),
        "action_high": probe.action_space.high.tolist(),
        "state_dim": int(probe.n_objects * len(probe.STATE_FIELDS)),
        "state_fields": list(probe.STATE_FIELDS),
        "object_names": list(probe.object_names),
        "arena_size": float(probe.arena_size),
        "policy": cfg.policy,
        "seed": cfg.seed,
    }
    writer = EpisodeWriter(
        cfg.out, probe.observation_space, probe.action_space, meta, overwrite=cfg.overwrite
    )
    probe.close()
    try:
        _run(envs, cfg, writer)
    finally:
        envs.close()
    return writer.close()


def _run(envs: gym.vector.VectorEnv, cfg: CollectConfig, writer: EpisodeWriter) -> None:
    n = envs.num_envs
    space = envs.single_action_space
    assigned = [-1] * n  # episode index each environment is recording (-1: idle)
    records: list[dict[str, list]] = [{} for _ in range(n)]
    policies: list[EpisodePolicy | None] = [None] * n
    finished: dict[int, Episode] = {}
    next_to_write, next_to_start = 0, 0

    def start(mask: np.ndarray) -> None:
        """Reset the masked environments: on new episodes while any remain, else as idle fillers
        (a vector env steps all its environments, and a finished one must be reset first)."""
        nonlocal next_to_start
        seeds: list[int | None] = [None] * n
        for i in np.flatnonzero(mask):
            if next_to_start >= cfg.episodes:
                continue
            assigned[i] = next_to_start
            seeds[i] = cfg.seed + next_to_start
            policies[i] = EpisodePolicy(cfg.policy, space, np.random.default_rng([cfg.seed, next_to_start]))
            next_to_start += 1
        obs, info = envs.reset(seed=seeds, options=None if mask.all() else {"reset_mask": mask})
        for i in np.flatnonzero(mask):
            records[i] = {"obs": [obs[i]], "actions": [], "rewards": [], "infos": [_one(info, i)]}

    start(np.ones(n, bool))
    with tqdm(total=cfg.episodes, desc=f"collect {cfg.world}", unit="ep") as bar:
        while next_to_write < cfg.episodes:
            experts = envs.call("expert_action") if _needs_expert(policies) else None
            actions = np.stack(
                [
                    p(None if experts is None else np.asarray(experts[i], np.float32))
                    if assigned[i] >= 0 and p is not None
                    else np.zeros(space.shape, np.float32)
                    for i, p in enumerate(policies)
                ]
            )
            obs, reward, terminated, truncated, info = envs.step(actions)
            done = np.zeros(n, bool)
            for i in range(n):
                if assigned[i] < 0:
                    continue
                rec = records[i]
                rec["obs"].append(obs[i])
                rec["actions"].append(actions[i])
                rec["rewards"].append(float(reward[i]))
                rec["infos"].append(_one(info, i))
                if terminated[i] or truncated[i]:
                    finished[assigned[i]] = _episode(rec, bool(terminated[i]))
                    assigned[i], policies[i] = -1, None
                    done[i] = True
            while next_to_write in finished:
                writer.add(finished.pop(next_to_write), seed=cfg.seed + next_to_write)
                next_to_write += 1
                bar.update(1)
            if done.any() and next_to_write < cfg.episodes:
                start(done)


def _needs_expert(policies: list[EpisodePolicy | None]) -> bool:
    return any(p is not None and p.kind == "expert" for p in policies)


def _one(info: dict[str, Any], i: int) -> dict[str, Any]:
    """Environment i's entries of a vector env's batched info dict."""
    out = {}
    for key, value in info.items():
        if key.startswith("_"):
            continue
        if isinstance(value, dict):
            out[key] = _one(value, i)
        else:
            out[key] = value[i]
    return out


def _episode(rec: dict[str, list], terminated: bool) -> Episode:
    infos = stack_infos(rec["infos"])
    return Episode(
        obs=np.stack(rec["obs"]),
        actions=np.stack(rec["actions"]).astype(np.float32),
        states=infos.pop("state").astype(np.float32),
        rewards=np.asarray(rec["rewards"], np.float32),
        terminated=terminated,
        extras=infos,
    )
