"""The MPC loop: plan in the model, act in the real world (the physics engine), re-plan.

Every step each environment's observation goes to the controller, which returns one action per
environment; the planners keep the rest of their plan as next step's warm start. Episodes end on
success (``terminated``), at the world's own limit, or at the step budget. Anything with
``reset(seed)`` and ``act(obs, goal)`` is a controller, so the random policy and the scripted
expert run through the same loop, on the same seeds, as baselines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np


class Controller(Protocol):
    def reset(self, seed: int | None = None) -> None: ...

    def act(self, obs: Any, goal: Any) -> np.ndarray:
        """Observations ``[E, ...]`` and goals ``[E, ...]`` -> actions ``[E, A]``."""
        ...


@dataclass
class Episode:
    """One controlled episode in the real world."""

    seed: int
    success: bool
    steps: int  # environment steps taken
    final_distance: float  # goal objects' distance to their goal at the end (world units; nan: no goal)
    reward: float  # the world's summed reward
    plan_ms: list[float] = field(default_factory=list)  # wall time of every act() call
    plan_cpu_ms: list[float] = field(default_factory=list)  # process CPU time of every act() call
    states: np.ndarray | None = None  # [T+1, S] ground truth, for pictures
    goal: np.ndarray | None = None

    @property
    def steps_to_success(self) -> int | None:
        return self.steps if self.success else None


def info_goal(env: gym.Env, info: dict[str, Any]) -> np.ndarray:
    """The default goal: the world's ``info["goal"]`` (Push: the block's goal position)."""
    if "goal" not in info:
        raise ValueError(f"{env.spec.id if env.spec else env} has no info['goal']: pass goal_fn")
    return np.asarray(info["goal"], np.float32)


def goal_distance(state: np.ndarray, goal: np.ndarray, objects: Sequence[int]) -> float:
    """Summed distance of ``objects`` (indices) to goal positions ``[2 * len(objects)]``."""
    pos = np.asarray(state, np.float32).reshape(-1, 6)[list(objects), :2]
    goal = np.asarray(goal, np.float32).reshape(len(objects), 2)
    return float(np.linalg.norm(pos - goal, axis=-1).sum())


def run_mpc(
    envs: Sequence[gym.Env],
    controller: Controller,
    seeds: Sequence[int],
    steps: int,
    objects: Sequence[int] = (1,),
    goal_fn: Callable[[gym.Env, dict[str, Any]], Any] = info_goal,
    progress: Callable[[Episode], None] | None = None,
) -> list[Episode]:
    """Run one episode per seed, ``len(envs)`` at a time in lockstep; return them in seed order.

    ``goal_fn(env, info)`` gives each episode's goal from its reset (default ``info["goal"]``);
    ``objects`` are the state indices scored against ``info["goal"]`` for the final distance.
    A finished environment stays frozen (its last observation is still passed to the
    controller, so a planner's per-environment warm starts stay aligned) until the whole group
    is done.
    """
    if steps < 1:
        raise ValueError(f"the step budget must be at least 1, got {steps}")
    episodes: list[Episode] = []
    n = len(envs)
    for start in range(0, len(seeds), n):
        group = list(seeds[start : start + n])
        episodes += _run_group(envs[: len(group)], controller, group, steps, objects, goal_fn, progress)
    return episodes


def _run_group(envs, controller, seeds, steps, objects, goal_fn, progress) -> list[Episode]:
    controller.reset(seeds[0])
    obs, goals, states, rewards, done, success, infos = [], [], [], [], [], [], []
    for env, seed in zip(envs, seeds, strict=True):
        o, info = env.reset(seed=seed)
        obs.append(o)
        goals.append(np.asarray(goal_fn(env, info)))
        states.append([info["state"]])
        rewards.append(0.0)
        done.append(False)
        success.append(False)
        infos.append(info)
    plan_ms: list[float] = []
    plan_cpu_ms: list[float] = []
    taken = [0] * len(envs)
    for _ in range(steps):
        tick, cpu = time.perf_counter(), time.process_time()
        actions = np.asarray(controller.act(np.stack(obs), np.stack(goals)))
        plan_ms.append(1000 * (time.perf_counter() - tick))
        plan_cpu_ms.append(1000 * (time.process_time() - cpu))
        for i, env in enumerate(envs):
            if done[i]:
                continue
            o, r, terminated, truncated, info = env.step(actions[i])
            obs[i], infos[i] = o, info
            states[i].append(info["state"])
            rewards[i] += float(r)
            taken[i] += 1
            success[i] = bool(info.get("is_success", terminated))
            done[i] = terminated or truncated
        if all(done):
            break
    out = []
    for i, seed in enumerate(seeds):
        goal = infos[i].get("goal")
        distance = goal_distance(infos[i]["state"], goal, objects) if goal is not None else float("nan")
        ep = Episode(
            seed=seed, success=success[i], steps=taken[i], final_distance=distance,
            reward=rewards[i], plan_ms=plan_ms[: taken[i]], plan_cpu_ms=plan_cpu_ms[: taken[i]],
            states=np.stack(states[i]),
            goal=None if goal is None else np.asarray(goal),
        )
        out.append(ep)
        if progress is not None:
            progress(ep)
    return out


class RandomPolicy:
    """Uniform random actions in the action space (a baseline controller)."""

    def __init__(self, space: gym.spaces.Box, seed: int = 0):
        self.space, self.rng = space, np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def act(self, obs: Any, goal: Any) -> np.ndarray:
        low, high = self.space.low, self.space.high
        return self.rng.uniform(low, high, size=(len(obs), *low.shape)).astype(np.float32)


class ExpertPolicy:
    """The world's scripted expert, read from each environment (a baseline controller)."""

    def __init__(self, envs: Sequence[gym.Env]):
        if not all(hasattr(env.unwrapped, "expert_action") for env in envs):
            raise ValueError("this world has no scripted expert (env.unwrapped.expert_action)")
        self.envs = envs

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, obs: Any, goal: Any) -> np.ndarray:
        return np.stack([env.unwrapped.expert_action() for env in self.envs[: len(obs)]])
