"""The dream: a trained world model served as a Gymnasium environment.

An episode starts from a real observation (the real world reset with a seed, encoded), then
every step is the model's ``predict``; no physics runs until the next reset. The reward is the
goal objects' distance to the world's goal read through the state probe (for Push exactly the
real world's reward, ``-distance / arena_size``), or the model's own reward head when it has
one (a method ``reward(z [B, ...]) -> [B]``). ``render`` draws the model's decoder output, or
else the probe's state with the world's own ``render_state``.

``gymnasium.make("physworld/Dream-v0", model=PATH_OR_MODEL)`` builds a :class:`DreamEnv`;
``gymnasium.make_vec("physworld/Dream-v0", num_envs=N, model=...)`` a batched
:class:`DreamVectorEnv` (one predictor call for all N per step). The id is registered on
``import physworld`` with string entry points, so registering imports no torch.

Predictions run open loop from an anchor latent over at most ``context`` actions (the horizon
a planner also rolls out over, which gives history-based predictors their history); when the
context is full the latest prediction becomes the next anchor.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal, TypedDict, Unpack

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from torch import Tensor

from physworld.models.base import WorldModel
from physworld.models.probe import object_positions
from physworld.plan.planners import (
    PlanCost,
    action_bounds,
    as_model_obs,
    check_probe,
    load_planning_model,
    model_device,
    object_indices,
)

ObsKind = Literal["latent", "state"]
RewardKind = Literal["goal", "shaped"]
OBS_LIMIT = 1e6  # latents are unbounded; a wide finite box (Gymnasium warns on infinite ones)


@torch.no_grad()
def policy_observation(model: WorldModel, z: Tensor, goal: np.ndarray | None, kind: ObsKind) -> np.ndarray:
    """What a policy sees, in the dream and in the real world alike: the latent ``z [n, ...]``
    flattened (or the probe's state), then the goal positions ``[n, ...]`` if there is a goal."""
    x = z.flatten(1) if kind == "latent" else model.read_state(z)
    parts = [x.float().cpu().numpy()]
    if goal is not None:
        parts.append(np.asarray(goal, np.float32).reshape(len(parts[0]), -1))
    return np.concatenate(parts, 1).clip(-OBS_LIMIT, OBS_LIMIT).astype(np.float32)


class DreamOptions(TypedDict, total=False):
    """The keywords :class:`DreamEnv` and :class:`DreamVectorEnv` share (see ``_Dream``)."""

    obs: ObsKind  # "latent" (default) or "state": what the policy observes
    reward: RewardKind  # "goal" (default) or "shaped"
    objects: Sequence[str | int] | None  # the goal objects (default: the world's)
    max_steps: int | None  # truncation (default: the world's)
    context: int  # actions rolled out from one anchor latent (default 8)
    action_low: Sequence[float] | None  # tighter action bounds than the world's
    action_high: Sequence[float] | None
    device: str  # "cpu" (default), "cuda", "auto"


class _Dream:
    """The batched core both environments share: ``n`` dreams advanced by one predict call."""

    def __init__(
        self,
        model: str | os.PathLike | WorldModel,
        n: int,
        world: str | None = None,
        *,
        obs: ObsKind = "latent",
        reward: RewardKind = "goal",
        objects: Sequence[str | int] | None = None,
        max_steps: int | None = None,
        context: int = 8,
        action_low: Sequence[float] | None = None,
        action_high: Sequence[float] | None = None,
        device: str = "cpu",
    ):
        import physworld  # noqa: F401  (registers the worlds)

        self.model = load_planning_model(model, device)
        c = self.model.config
        self.world = world or c.world
        if not self.world:
            raise ValueError("the model records no world: pass world='physworld/...'")
        if c.world and self.world != c.world:
            raise ValueError(f"the model was trained on {c.world}, not on {self.world}")
        if obs not in ("latent", "state"):
            raise ValueError(f"obs must be 'latent' or 'state', got {obs!r}")
        if context < 1:
            raise ValueError(f"context must be at least 1, got {context}")
        self.device = model_device(self.model)
        kwargs = {**c.world_kwargs, "obs": c.obs_kind}
        self.real = [gym.make(self.world, **kwargs).unwrapped for _ in range(n)]
        self.reward_head = callable(getattr(self.model, "reward", None))
        first, info = self.real[0].reset(seed=0)
        self.has_goal = "goal" in info and not self.reward_head
        if obs == "state" or self.has_goal:
            check_probe(self.model)
        if not (self.reward_head or "goal" in info):
            raise ValueError(f"{self.world} has no goal and the model no reward head: nothing to reward")
        self.objects = object_indices(self.model, objects) if self.has_goal else []
        if reward not in ("goal", "shaped"):
            raise ValueError(f"reward must be 'goal' or 'shaped', got {reward!r}")
        if reward == "shaped" and not self.has_goal:
            raise ValueError("a shaped reward is the planners' goal cost: it needs a world with a goal")
        self.shaping = PlanCost(self.model, "state", self.objects) if reward == "shaped" else None
        self.obs_kind, self.context = obs, context
        self.max_steps = int(max_steps or getattr(self.real[0], "max_steps", 100))
        self.low, self.high = action_bounds(self.model, action_low, action_high)
        self.action_space = gym.spaces.Box(self.low, self.high, dtype=np.float32)
        with torch.no_grad():
            z = self._encode([first])
        self.latent_shape = tuple(z.shape[1:])
        size = int(np.prod(self.latent_shape)) if obs == "latent" else c.state_dim
        size += 2 * len(self.objects) if self.has_goal else 0
        self.observation_space = gym.spaces.Box(-OBS_LIMIT, OBS_LIMIT, (size,), np.float32)
        a = c.action_dim
        self.z = torch.zeros(n, *self.latent_shape, device=self.device)  # current latents
        self.anchor = torch.zeros_like(self.z)
        self.buffer = torch.zeros(n, context, a, device=self.device)  # actions since the anchor
        self.filled = np.zeros(n, int)
        self.steps = np.zeros(n, int)
        self.goal = np.zeros((n, len(self.objects), 2), np.float32)
        self.tolerance = np.zeros(n, np.float32)

    def _encode(self, frames: list[np.ndarray]) -> Tensor:
        x, _ = as_model_obs(self.model, np.stack(frames), self.device)
        return self.model.encode(x)

    @torch.no_grad()
    def reset(self, idx: Sequence[int], seeds: Sequence[int]) -> None:
        """Start dreams ``idx`` from real observations of the world reset with ``seeds``."""
        frames = []
        for i, seed in zip(idx, seeds, strict=True):
            obs, info = self.real[i].reset(seed=int(seed))
            frames.append(obs)
            if self.has_goal:
                self.goal[i] = np.asarray(info["goal"], np.float32).reshape(-1, 2)
                self.tolerance[i] = float(info.get("params", {}).get("goal_tolerance", 0.0))
        z = self._encode(frames)
        self.z[list(idx)] = z
        self.anchor[list(idx)] = z
        self.filled[list(idx)] = 0
        self.steps[list(idx)] = 0

    @torch.no_grad()
    def step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance the ``active`` dreams one step: rewards, terminations, truncations ``[n]``."""
        a = torch.as_tensor(np.clip(np.asarray(actions, np.float32), self.low, self.high), device=self.device)
        full = active & (self.filled == self.context)
        if full.any():  # the context is full: the latest prediction becomes the anchor
            self.anchor[full] = self.z[full]
            self.filled[full] = 0
        idx = np.flatnonzero(active)
        self.buffer[idx, self.filled[idx]] = a[idx]
        self.filled[idx] += 1
        self.steps[idx] += 1
        for length in np.unique(self.filled[idx]):  # one predict call per context length
            group = idx[self.filled[idx] == length]
            pred = self.model.predict(self.anchor[group], self.buffer[group, :length])
            self.z[group] = pred[:, -1]
        reward, success = self.reward()
        terminated = success & active
        truncated = (self.steps >= self.max_steps) & active & ~terminated
        return np.where(active, reward, 0.0).astype(np.float32), terminated, truncated

    def reward(self) -> tuple[np.ndarray, np.ndarray]:
        """Rewards and successes of the current latents."""
        if self.reward_head:
            return self.model.reward(self.z).float().cpu().numpy(), np.zeros(len(self.z), bool)
        distance = self.distance()
        arena = float(self.model.config.arena_size)
        if self.shaping is None:
            return -distance / arena, distance <= self.tolerance
        goal = torch.as_tensor(self.goal, device=self.device)
        cost = self.shaping.step_costs(self.z[:, None, None], goal)[:, 0, 0].cpu().numpy()
        return -cost / arena, distance <= self.tolerance

    def distance(self) -> np.ndarray:
        pos = object_positions(self.model.read_state(self.z))[:, self.objects].cpu().numpy()
        return np.linalg.norm(pos - self.goal, axis=-1).sum(-1)

    @torch.no_grad()
    def observe(self) -> np.ndarray:
        """The policy's view ``[n, obs]`` of the current latents (see :func:`policy_observation`)."""
        return policy_observation(self.model, self.z, self.goal if self.has_goal else None, self.obs_kind)

    @torch.no_grad()
    def infos(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{} for _ in self.real]
        if self.has_goal:
            states = self.model.read_state(self.z).cpu().numpy()
            success = self.distance() <= self.tolerance
            for i, info in enumerate(out):
                info.update(state=states[i].copy(), goal=self.goal[i].reshape(-1).copy(), is_success=bool(success[i]))
        return out

    @torch.no_grad()
    def render(self, i: int) -> np.ndarray:
        """Dream ``i`` as a frame: the decoder's output, else the probe state drawn by the world."""
        z = self.z[i : i + 1]
        try:
            out = self.model.decode(z)[0]
        except NotImplementedError:
            check_probe(self.model)
            return self.real[i].render_state(self.model.read_state(z)[0].cpu().numpy())
        if self.model.config.obs_kind == "state":
            return self.real[i].render_state(out.cpu().numpy())
        if out.dtype != torch.uint8:  # decoders output pixels in [-1, 1], as encoders read them
            out = ((out.float() + 1) * 127.5).clamp(0, 255).to(torch.uint8)
        return out.movedim(0, -1).cpu().numpy()

    def close(self) -> None:
        for env in self.real:
            env.close()


class DreamEnv(gym.Env):
    """One dream as a ``gymnasium.Env`` (see the module docstring).

    Observations: the latent (``obs="latent"``) or the probe's state (``obs="state"``), followed
    by the goal positions when the world has a goal. ``reset(seed=s)`` starts from the real
    world's ``reset(seed=s)``. ``reward="goal"`` is the world's reward (``-distance / arena``);
    ``reward="shaped"`` is minus the planners' per-step cost / arena (on Push it adds the agent's
    distance to the pushing spot, which a policy otherwise has to discover by chance).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self,
        model: str | os.PathLike | WorldModel,
        world: str | None = None,
        *,
        render_mode: str | None = None,
        **options: Unpack[DreamOptions],
    ):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.dream = _Dream(model, 1, world, **options)
        self.model = self.dream.model
        self.action_space = self.dream.action_space
        self.observation_space = self.dream.observation_space
        self.render_mode = render_mode

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        real_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
        self.dream.reset([0], [real_seed])
        return self.dream.observe()[0], self.dream.infos()[0]

    def step(self, action):
        reward, terminated, truncated = self.dream.step(np.asarray(action)[None], np.ones(1, bool))
        return self.dream.observe()[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), self.dream.infos()[0]

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() was called with render_mode=None; pass render_mode='rgb_array'")
            return None
        return self.dream.render(0)

    def close(self) -> None:
        self.dream.close()


class DreamVectorEnv(VectorEnv):
    """``num_envs`` dreams stepped by one batched predictor call (see the module docstring).

    Autoreset follows Gymnasium: ``NEXT_STEP`` (default; the step after an episode ends resets
    it) or ``SAME_STEP`` (reset at once; the last observation is in ``info["final_obs"]``).
    """

    def __init__(
        self,
        model: str | os.PathLike | WorldModel,
        num_envs: int = 8,
        world: str | None = None,
        *,
        render_mode: str | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        max_episode_steps: int | None = None,  # make_vec passes it; truncation is max_steps here
        **options: Unpack[DreamOptions],
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        mode = AutoresetMode(autoreset_mode)
        if mode == AutoresetMode.DISABLED:
            raise ValueError("DreamVectorEnv supports NEXT_STEP and SAME_STEP autoreset")
        self.dream = _Dream(model, num_envs, world, **options)
        self.model, self.num_envs, self.render_mode = self.dream.model, num_envs, render_mode
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": 15, "autoreset_mode": mode}
        self.single_action_space = self.dream.action_space
        self.single_observation_space = self.dream.observation_space
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self._needs_reset = np.zeros(num_envs, bool)

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None):
        mask = np.ones(self.num_envs, bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], bool)
        if isinstance(seed, int):
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
            seeds: list[int | None] = [seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed) if seed is not None else [None] * self.num_envs
        idx = np.flatnonzero(mask)
        self._start(idx, [seeds[i] for i in idx])
        return self.dream.observe(), self._batch(self.dream.infos())

    def _start(self, idx: np.ndarray, seeds: Sequence[int | None]) -> None:
        draws = [s if s is not None else int(self.np_random.integers(2**31 - 1)) for s in seeds]
        self.dream.reset(list(idx), draws)
        self._needs_reset[idx] = False

    def step(self, actions):
        pending = self._needs_reset.copy()
        if pending.any():  # NEXT_STEP: these environments ended last step; this step resets them
            self._start(np.flatnonzero(pending), [None] * int(pending.sum()))
        reward, terminated, truncated = self.dream.step(actions, ~pending)
        done = terminated | truncated
        obs, infos = self.dream.observe(), self._batch(self.dream.infos())
        if self.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP and done.any():
            final_obs, final_infos = obs, infos
            self._start(np.flatnonzero(done), [None] * int(done.sum()))
            obs, infos = self.dream.observe(), self._batch(self.dream.infos())
            infos["final_obs"] = np.empty(self.num_envs, object)
            for i in np.flatnonzero(done):
                infos["final_obs"][i] = final_obs[i]
            infos["_final_obs"] = done.copy()
            infos["final_info"], infos["_final_info"] = final_infos, done.copy()
        else:
            self._needs_reset = done
        return obs, reward, terminated, truncated, infos

    def _batch(self, infos: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i, info in enumerate(infos):
            out = self._add_info(out, info, i)
        return out

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode is None:
            gym.logger.warn("render() was called with render_mode=None; pass render_mode='rgb_array'")
            return None
        return tuple(self.dream.render(i) for i in range(self.num_envs))

    def close_extras(self, **kwargs: Any) -> None:
        self.dream.close()


class RealWorldObservation(gym.ObservationWrapper):
    """A real world seen as the dream shows it: observations encoded by the model, in the layout
    of :class:`DreamEnv` (latent or probe state, then ``info["goal"]``), so a policy trained in
    the dream runs unchanged in the physics engine."""

    def __init__(self, env: gym.Env, dream: DreamEnv):
        super().__init__(env)
        self.dream_core = dream.dream
        self.observation_space = dream.observation_space
        self.goal: np.ndarray | None = None

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.goal = np.asarray(info["goal"], np.float32) if self.dream_core.has_goal else None
        return self.observation(obs), info

    @torch.no_grad()
    def observation(self, observation: Any) -> np.ndarray:
        d = self.dream_core
        z = d._encode([observation])
        return policy_observation(d.model, z, None if self.goal is None else self.goal[None], d.obs_kind)[0]
