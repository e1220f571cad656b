"""Open-loop trajectories: the engine, the baselines and a model, scored on the same scenes.

A *scene* is a held-out initial condition (a reset seed) plus an action sequence. The engine
rolls every scene out once; every predictor then gets the same first state / observation and
the same actions, and returns predicted object states for steps ``1..H``. Scoring is on object
positions: a (object, step) pair is *accurate* when the predicted position lies within
``epsilon`` (world units) of the engine's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from physworld.data.collect import EpisodePolicy, Policy
from physworld.models import WorldModel
from physworld.worlds import object_positions

STATE_FIELDS = 6  # (x, y, vx, vy, angle, angvel) per object


@dataclass
class Scenes:
    """The engine's rollouts of ``len(seeds)`` held-out scenes over ``horizon`` steps."""

    world: str
    world_kwargs: dict[str, Any]  # everything passed to gym.make, obs included
    seeds: list[int]
    obs: np.ndarray  # [N, H+1, *obs] as the env returns them (pixels [H, W, 3] uint8)
    actions: np.ndarray  # [N, H, A] float32
    states: np.ndarray  # [N, H+1, S] float32, the engine's ground truth
    active: np.ndarray  # [N, n_objects] bool: objects in play (Balls may leave slots empty)
    arena_size: float
    step_seconds: float  # simulated time per env step: dt * frame_skip
    # what came before step 0 (``engine_rollout(context=K)``): K-1 frames and the K-1 actions
    # from the first of them into step 0, for a model that reads a state from several frames
    context_obs: np.ndarray | None = None  # [N, K-1, *obs]
    context_actions: np.ndarray | None = None  # [N, K-1, A]

    @property
    def n_objects(self) -> int:
        return self.active.shape[1]

    @property
    def horizon(self) -> int:
        return self.actions.shape[1]

    def make_env(self, index: int | None = None) -> gym.Env:
        """An unwrapped env of this world; reset on scene ``index`` when given (for drawing)."""
        env = gym.make(self.world, **self.world_kwargs).unwrapped
        if index is not None:
            env.reset(seed=self.seeds[index])
        return env


def make_world(world: str, world_kwargs: dict[str, Any], horizon: int) -> gym.Env:
    """The bare env (no wrappers: that is the engine at full speed), long enough for ``horizon``."""
    kwargs = dict(world_kwargs)
    kwargs["max_steps"] = max(int(kwargs.get("max_steps", 1)), horizon)
    return gym.make(world, **kwargs).unwrapped


def engine_rollout(
    world: str,
    world_kwargs: dict[str, Any],
    seeds: list[int],
    horizon: int,
    policy: Policy = "random",
    context: int = 1,
) -> Scenes:
    """Roll the engine out from each seed with a policy seeded by that seed.

    With ``context > 1`` the scenes start ``context - 1`` steps after the reset, and the frames
    and actions before that are kept as their context: every predictor (and baseline) is scored
    from the same step 0, and a model that reads velocity from several frames gets them.
    Termination (e.g. Push's success) is ignored: a prediction is scored on the whole horizon.
    """
    if context < 1:
        raise ValueError(f"context must be at least 1 frame, not {context}")
    k = context - 1
    horizon += k
    env = make_world(world, world_kwargs, horizon)
    kwargs = {**world_kwargs, "max_steps": env.max_steps}
    obs_all, actions_all, states_all, active = [], [], [], []
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        act = EpisodePolicy(policy, env.action_space, np.random.default_rng(seed))
        frames, states, actions = [obs], [info["state"]], []
        for _ in range(horizon):
            action = act(env.expert_action() if act.kind == "expert" else None)
            obs, _, _, _, info = env.step(action)
            frames.append(obs)
            states.append(info["state"])
            actions.append(action)
        obs_all.append(np.stack(frames))
        states_all.append(np.stack(states))
        actions_all.append(np.stack(actions))
        active.append(np.arange(env.n_objects) < info["n_objects"])
    obs, actions = np.stack(obs_all), np.stack(actions_all).astype(np.float32)
    return Scenes(
        world=world,
        world_kwargs=kwargs,
        seeds=list(seeds),
        obs=obs[:, k:],
        actions=actions[:, k:],
        states=np.stack(states_all)[:, k:].astype(np.float32),
        active=np.stack(active),
        arena_size=float(env.arena_size),
        step_seconds=float(env.dt * env.frame_skip),
        context_obs=obs[:, :k] if k else None,
        context_actions=actions[:, :k] if k else None,
    )


# --- predictors: Scenes -> predicted states [N, H, S] for steps 1..H ---------------------------


def engine_oracle(scenes: Scenes) -> np.ndarray:
    """The engine again, from the same seeds and actions: 100% unless the engine is not
    deterministic (which this would expose)."""
    env = make_world(scenes.world, scenes.world_kwargs, scenes.horizon)
    out = np.empty_like(scenes.states[:, 1:])
    for i, seed in enumerate(scenes.seeds):
        env.reset(seed=seed)
        for t, action in enumerate(scenes.actions[i]):
            out[i, t] = env.step(action)[-1]["state"]
    return out


def copy_last_state(scenes: Scenes) -> np.ndarray:
    """Nothing moves: every step repeats the state at t=0."""
    return np.repeat(scenes.states[:, :1], scenes.horizon, axis=1)


def constant_velocity(scenes: Scenes) -> np.ndarray:
    """Straight lines at the t=0 state's own velocity (and spin); no walls, no collisions.

    The velocity is read from the initial state vector itself (which holds vx, vy), not
    differenced from a t=-1 state, so it is exact at t=0.
    """
    s0 = scenes.states[:, 0].reshape(len(scenes.seeds), 1, scenes.n_objects, STATE_FIELDS)
    t = (np.arange(1, scenes.horizon + 1, dtype=np.float32) * scenes.step_seconds)[None, :, None]
    pred = np.repeat(s0, scenes.horizon, axis=1)
    pred[..., 0:2] += s0[..., 2:4] * t[..., None]
    pred[..., 4] = np.remainder(s0[..., 4] + s0[..., 5] * t + np.pi, 2 * np.pi) - np.pi
    return pred.reshape(len(scenes.seeds), scenes.horizon, -1)


def constant_velocity_from_frames(scenes: Scenes, tolerance: float = 12.0) -> np.ndarray:
    """Constant velocity read from the frames alone: the fair baseline for a model of pixels.

    :func:`constant_velocity` is handed each object's exact velocity from the state; a model of
    pixels has to read it off frames. Here each object's centre is the centroid of the pixels
    that are its colour blended with the scene's background (weighted by how much of it they
    hold; ``tolerance`` is the RGB distance allowed off that blend), in the last context frame and
    at t=0, and its velocity is their difference. Straight lines follow, as in
    :func:`constant_velocity`; an object not seen in both frames is a miss (NaN).
    """
    if scenes.context_obs is None or scenes.obs.ndim != 5:
        raise ValueError(
            "constant velocity from frames needs pixel scenes with a context frame before t=0 "
            "(engine_rollout(..., context=2) or more, obs='pixels')"
        )
    env = scenes.make_env()
    n, k = len(scenes.seeds), scenes.n_objects
    blank = np.full(k * STATE_FIELDS, np.nan, np.float32)  # nothing drawn: the scene's background
    background = []
    for seed in scenes.seeds:
        env.reset(seed=seed)
        background.append(env.render_state(blank))
    colors = np.stack(env.colors)[:, None, None, :]  # [k, 1, 1, 3]
    xs, ys = env.renderer.xs, env.renderer.ys
    env.close()
    frames = np.stack([scenes.context_obs[:, -1], scenes.obs[:, 0]], 1).astype(np.float32)  # [N, 2, H, W, 3]
    centres = np.empty((n, 2, k, 2), np.float32)
    for i in range(n):
        lift = frames[i][:, None] - background[i]  # [2, 1, H, W, 3]: what the objects add
        colour = colors - background[i]  # [k, H, W, 3]
        share = (lift * colour).sum(-1) / np.maximum((colour * colour).sum(-1), 1e-6)  # [2, k, H, W]
        off = np.linalg.norm(lift - share[..., None] * colour, axis=-1)
        weight = np.clip(share, 0.0, 1.0) * (off < tolerance)
        with np.errstate(invalid="ignore", divide="ignore"):
            mass = weight.sum((-2, -1))
            centres[i, ..., 0] = (weight * xs[None, None, None, :]).sum((-2, -1)) / mass
            centres[i, ..., 1] = (weight * ys[None, None, :, None]).sum((-2, -1)) / mass
    velocity = (centres[:, 1] - centres[:, 0]) / scenes.step_seconds  # [N, k, 2]
    t = (np.arange(1, scenes.horizon + 1, dtype=np.float32) * scenes.step_seconds)[None, :, None, None]
    pred = np.zeros((n, scenes.horizon, k, STATE_FIELDS), np.float32)
    pred[..., 0:2] = centres[:, 1, None] + velocity[:, None] * t
    pred[..., 2:4] = velocity[:, None]
    return pred.reshape(n, scenes.horizon, -1)


def model_obs(model: WorldModel, obs: np.ndarray) -> torch.Tensor:
    """Env observations ``[..., *obs]`` -> the model's input (pixels channels first, uint8)."""
    x = torch.from_numpy(np.ascontiguousarray(obs))
    if model.config.obs_kind == "pixels":
        x = x.movedim(-1, -3)
    return x.to(next(model.parameters()).device)


@dataclass
class ModelRollout:
    """What an open-loop model rollout yields, all as numpy states ``[N, ..., S]``."""

    states: np.ndarray  # [N, H, S]: read_state(predict(z_0, actions)), z_0 from the real frames up to t=0
    probe_on_truth: np.ndarray  # [N, H, S]: read_state(z_t), the true frames' latents: no prediction
    frames: np.ndarray | None  # [N, H, h, w, 3] uint8 from decode, when the model has one


@torch.no_grad()
def model_rollout(
    model: WorldModel, scenes: Scenes, batch_size: int = 256, decode: int = 0, seed: int = 0
) -> ModelRollout:
    """Read the state at step 0 (from ``context_frames`` real frames: :func:`read_latents`),
    ``predict`` over the horizon, read states via the probe.

    ``probe_on_truth`` reads the state of the engine's own observations at every step the same
    way, through the probe: the error that remains with no prediction at all, i.e. the probe's share.
    ``decode`` scenes (the first ones) also get decoded frames, if the model is a pixel model
    with a decoder. The rollout draws its noise from ``seed`` (the caller's random state is left
    as it was), so a model that samples (diffusion) scores the same on every run.
    """
    model.eval()
    device = next(model.parameters()).device
    n, h = len(scenes.seeds), scenes.horizon
    z = read_latents(model, scenes, batch_size)  # [N, H+1, ...]
    actions = torch.from_numpy(scenes.actions).to(device)
    z_pred = predict_seeded(model, z[:, 0], actions, batch_size, seed)
    read = lambda latents: read_states(model, latents.flatten(0, 1), batch_size).reshape(n, h, -1)  # noqa: E731
    frames = None
    if decode and model.config.obs_kind == "pixels" and has_decoder(model, scenes):
        decoded = model.decode(z_pred[:decode].flatten(0, 1))
        frames = to_frames(decoded).reshape(min(decode, n), h, *frames_shape(model))
    return ModelRollout(read(z_pred), read(z[:, 1:]), frames)


def predict_seeded(model: WorldModel, z: torch.Tensor, actions: torch.Tensor, batch_size: int, seed: int) -> torch.Tensor:
    """``model.predict`` over ``z [M, ...]`` and ``actions [M, H, A]``, a chunk at a time (bounded
    memory), drawing its noise from ``seed`` and leaving the caller's random state as it was."""
    with torch.random.fork_rng(devices=[z.device] if z.device.type == "cuda" else []):
        torch.manual_seed(seed)
        return torch.cat([model.predict(z[lo : lo + batch_size], actions[lo : lo + batch_size]) for lo in range(0, len(z), batch_size)])


@torch.no_grad()
def model_one_step(model: WorldModel, scenes: Scenes, batch_size: int = 256, seed: int = 0) -> np.ndarray:
    """Diagnostic: every step ``[N, H, S]`` predicted one step ahead from the model's state of the
    *true* frames before it (teacher forcing), read through the probe.

    Its error is the model's per-step precision with none of its own errors fed back; the gap to
    the open-loop rollout's error is what feeding them back adds."""
    model.eval()
    device = next(model.parameters()).device
    n, h = len(scenes.seeds), scenes.horizon
    z = read_latents(model, scenes, batch_size)[:, :-1].flatten(0, 1)  # the state before each step
    actions = torch.from_numpy(scenes.actions).to(device).flatten(0, 1)[:, None]
    return read_states(model, predict_seeded(model, z, actions, batch_size, seed)[:, 0], batch_size).reshape(n, h, -1)


@torch.no_grad()
def read_latents(model: WorldModel, scenes: Scenes, batch_size: int = 256) -> torch.Tensor:
    """The model's state at every step of every scene ``[N, H+1, ...]``: each frame read with
    the ``context_frames - 1`` real frames before it (from the scenes' context before step 0)."""
    n, h = len(scenes.seeds), scenes.horizon
    if model.context_frames == 1:
        return encode(model, scenes.obs.reshape(n * (h + 1), *scenes.obs.shape[2:]), batch_size).unflatten(0, (n, h + 1))
    before = 0 if scenes.context_obs is None else scenes.context_obs.shape[1]
    obs = scenes.obs if not before else np.concatenate([scenes.context_obs, scenes.obs], 1)
    actions = scenes.actions if not before else np.concatenate([scenes.context_actions, scenes.actions], 1)
    device = next(model.parameters()).device
    chunks = [
        model.encode_clip(model_obs(model, obs[lo : lo + batch_size]), torch.from_numpy(actions[lo : lo + batch_size]).to(device))
        for lo in range(0, n, batch_size)
    ]
    return torch.cat(chunks)[:, before:]


def encode(model: WorldModel, obs: np.ndarray, batch_size: int) -> torch.Tensor:
    """Env observations ``[M, *obs]`` -> latents ``[M, ...]``, a chunk at a time (bounded memory)."""
    return torch.cat([model.encode(model_obs(model, obs[lo : lo + batch_size])) for lo in range(0, len(obs), batch_size)])


def read_states(model: WorldModel, z: torch.Tensor, batch_size: int) -> np.ndarray:
    """Latents ``[M, ...]`` -> probe states ``[M, S]`` (float32 numpy)."""
    chunks = [model.read_state(z[lo : lo + batch_size]) for lo in range(0, len(z), batch_size)]
    return torch.cat(chunks).float().cpu().numpy()


@torch.no_grad()
def has_decoder(model: WorldModel, scenes: Scenes) -> bool:
    """Whether ``decode`` works on this model (a family without a decoder, or with it switched
    off, raises NotImplementedError): tried on the first scene's first observation."""
    try:
        model.decode(model.encode(model_obs(model, scenes.obs[:1, 0])))
    except NotImplementedError:
        return False
    return True


def frames_shape(model: WorldModel) -> tuple[int, int, int]:
    c, h, w = model.config.obs_shape
    return h, w, c


def to_frames(x: torch.Tensor) -> np.ndarray:
    """Decoded ``[B, C, H, W]`` -> uint8 ``[B, H, W, C]``.

    uint8 passes through; floats are read on the models' own input scale, [-1, 1]
    (the inverse of ``blocks.pixels_to_float``).
    """
    if x.dtype != torch.uint8:
        x = ((x.detach().float() + 1) * 127.5).clamp(0, 255).round().to(torch.uint8)
    return x.cpu().movedim(1, -1).numpy()


# --- metrics ---------------------------------------------------------------------------------


def trajectory_metrics(
    pred: np.ndarray, scenes: Scenes, epsilon: float
) -> dict[str, list[float]]:
    """Per-step scores of predicted states ``[N, H, S]`` against the engine's steps ``1..H``.

    ``accuracy_at_step[h-1]`` is the fraction of (scene, active object) pairs at step ``h``
    whose position is within ``epsilon`` world units; ``accuracy_within_horizon[h-1]`` is the
    same fraction over all steps ``1..h``. A non-finite prediction counts as a miss (and its
    error as ``arena_size * 2``, so the RMSEs stay finite).
    """
    true = scenes.states[:, 1:]
    k = scenes.n_objects
    pred = np.where(np.isfinite(pred), pred, 2 * scenes.arena_size)
    objects = lambda s: s.reshape(*s.shape[:-1], k, STATE_FIELDS)  # noqa: E731
    pos_err = np.linalg.norm(object_positions(pred, k) - object_positions(true, k), axis=-1)
    vel_err = np.linalg.norm(objects(pred)[..., 2:4] - objects(true)[..., 2:4], axis=-1)
    mask = np.broadcast_to(scenes.active[:, None, :], pos_err.shape)  # [N, H, k]
    count = mask.sum(axis=(0, 2))
    hits = ((pos_err <= epsilon) & mask).sum(axis=(0, 2))
    mean = lambda x: (x * mask).sum(axis=(0, 2)) / count  # noqa: E731
    return {
        "accuracy_at_step": (hits / count).tolist(),
        "accuracy_within_horizon": (np.cumsum(hits) / np.cumsum(count)).tolist(),
        "position_rmse": np.sqrt(mean(pos_err**2)).tolist(),
        "position_rmse_over_arena": (np.sqrt(mean(pos_err**2)) / scenes.arena_size).tolist(),
        "mean_position_error": mean(pos_err).tolist(),
        "velocity_rmse": np.sqrt(mean(vel_err**2)).tolist(),
    }


def in_free_flight(scenes: Scenes, tolerance: float) -> np.ndarray:
    """``[N, H, k]`` bool: whether each object is still on the straight line of its t=0 velocity
    (within ``tolerance`` world units) at every step up to this one, i.e. nothing (a wall,
    another object, the action) has turned it yet. Inactive objects are False."""
    k = scenes.n_objects
    off = np.linalg.norm(
        object_positions(constant_velocity(scenes), k) - object_positions(scenes.states[:, 1:], k), axis=-1
    )
    return np.logical_and.accumulate(off <= tolerance, axis=1) & scenes.active[:, None, :]


def accuracy_by_motion(pred: np.ndarray, scenes: Scenes, epsilon: float, step: int) -> dict[str, float]:
    """Accuracy at ``step`` (1-based) split by what the engine's objects did up to it: ``free``
    (still in free flight, :func:`in_free_flight` at 1% of the arena) and ``turned`` (met a wall,
    another object or the action), with ``free_share``, the share of objects in free flight.

    Constant velocity is exact on the first and far off on the second; a learned model is
    usually neither, so its accuracy alone hides which of the two it must improve."""
    k = scenes.n_objects
    free = in_free_flight(scenes, 0.01 * scenes.arena_size)[:, step - 1]
    active = scenes.active
    err = np.linalg.norm(object_positions(pred[:, step - 1], k) - object_positions(scenes.states[:, step], k), axis=-1)
    hit = err <= epsilon  # NaN (a missed object) is False
    share = lambda mask: float(hit[mask].mean()) if mask.any() else float("nan")  # noqa: E731
    return {"free": share(free), "turned": share(active & ~free), "free_share": float(free.sum() / active.sum())}


BASELINES = {
    "engine_oracle": engine_oracle,
    "copy_last_state": copy_last_state,
    "constant_velocity": constant_velocity,
}

DESCRIPTIONS = {
    "engine_oracle": "the engine re-run from the same seeds and actions (the 100% reference)",
    "copy_last_state": "every step repeats the true state at t=0",
    "constant_velocity": "straight lines at the velocity held in the true t=0 state (no walls, no collisions)",
    "model": "the model's open-loop rollout: encode_context(its context_frames real frames up to t=0), predict over the horizon, read_state",
    "model_probe_on_truth": "diagnostic: read_state(encode_context(true frames up to step t)), no prediction (the probe's own error)",
}


def score_all(
    model: WorldModel, scenes: Scenes, epsilon: float, batch_size: int = 256, decode: int = 0
) -> tuple[dict[str, dict[str, list[float]]], ModelRollout]:
    """Every baseline and the model on ``scenes``: ``({name: metrics}, the model's rollout)``."""
    scores = {name: trajectory_metrics(fn(scenes), scenes, epsilon) for name, fn in BASELINES.items()}
    rollout = model_rollout(model, scenes, batch_size, decode)
    scores["model"] = trajectory_metrics(rollout.states, scenes, epsilon)
    scores["model_probe_on_truth"] = trajectory_metrics(rollout.probe_on_truth, scenes, epsilon)
    return scores, rollout
