"""Planning in a world model's latent space: CEM, MPPI and gradient descent on action sequences.

Every planner does the same three things and differs only in how it proposes candidates:

1. encode the current observations once: ``z0 [E, ...]`` for ``E`` environments at once;
2. score candidate action sequences ``[E, K, H, A]`` by rolling them out with ``model.predict``
   (one batched call, :meth:`Planner.evaluate`) and measuring the predicted latents' distance
   to the goal (:class:`PlanCost`);
3. keep the best sequence, execute its first action, and warm-start the next call from the rest
   (shifted by one step): the receding horizon of :func:`physworld.plan.mpc.run_mpc`.

Goals are observations (compared in latent space) or ground-truth states (compared through the
model's state probe, on the objects that matter: for Push, the block against the goal position).
Actions always stay inside the bounds the model was trained with.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from physworld.models.base import WorldModel, check_choice
from physworld.models.probe import object_positions

GoalKind = Literal["state", "obs"]

# The objects a world's `info["goal"]` is about, by name (the default for state goals).
GOAL_OBJECTS: dict[str, tuple[str, ...]] = {"physworld/Push-v0": ("block",)}
# Cost shaping per world (PlanCost's approach / approach_offset when left as None). On Push, with
# the true physics as the model, CEM reaches 0/4 goals on the block distance alone, 0/4 adding
# the agent-to-block distance, 4/4 with the agent drawn to the pushing spot 1.3 behind the block
# (half the block's side + the agent's radius + a margin): benchmarks/planning.py --oracle.
SHAPING: dict[str, tuple[float, float]] = {"physworld/Push-v0": (1.0, 1.3)}
STATE_FIELDS = 6  # per object: x, y, vx, vy, angle, angvel


# --- checks shared by the planners and the dream environment ---------------------------------


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model lives (its first parameter or buffer; CPU for a model with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def load_planning_model(model: str | os.PathLike | WorldModel, device: str | torch.device = "cpu") -> WorldModel:
    """A model object as is, or a checkpoint folder (a run folder's ``model/`` is found too)."""
    if isinstance(model, WorldModel):
        return model.eval()
    from physworld.models import load_model
    from physworld.runtime import pick_device

    path = Path(model)
    if (path / "model" / "config.json").is_file() and not (path / "config.json").is_file():
        path = path / "model"
    return load_model(path, pick_device(str(device)))


def action_bounds(
    model: WorldModel, low: Sequence[float] | None = None, high: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The action box to plan in: the model's training bounds, or a sub-box of them.

    A model knows nothing of actions outside what it was trained on, so asking for wider bounds
    is an error rather than a silent extrapolation.
    """
    c = model.config
    trained = bool(c.action_low) and bool(c.action_high)
    if not trained and (low is None or high is None):
        raise ValueError(
            "the model records no action bounds (config.action_low/high are empty): "
            "pass action_low and action_high explicitly"
        )
    lo = np.asarray(c.action_low if low is None else low, np.float32).reshape(-1)
    hi = np.asarray(c.action_high if high is None else high, np.float32).reshape(-1)
    for name, bound in (("action_low", lo), ("action_high", hi)):
        if bound.shape != (c.action_dim,):
            raise ValueError(f"{name} has {bound.size} values but the model's actions have {c.action_dim}")
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()) or (lo >= hi).any():
        raise ValueError(f"action bounds must be finite with low < high, got {lo.tolist()} .. {hi.tolist()}")
    if trained:
        t_lo, t_hi = np.asarray(c.action_low, np.float32), np.asarray(c.action_high, np.float32)
        if (lo < t_lo - 1e-6).any() or (hi > t_hi + 1e-6).any():
            raise ValueError(
                f"action bounds {lo.tolist()} .. {hi.tolist()} reach outside the bounds the model "
                f"was trained with ({t_lo.tolist()} .. {t_hi.tolist()}, on {c.world or 'its data'})"
            )
    return lo, hi


def check_probe(model: WorldModel) -> None:
    """Refuse a state goal for a model that cannot read states out of its latents."""
    overridden = type(model).read_state is not WorldModel.read_state
    probe = getattr(model, "probe", None)
    if overridden or (probe is not None and bool(getattr(probe, "fitted", True))):
        return
    why = "has no state probe" if probe is None else "has a state probe that was never fitted"
    raise ValueError(
        f"a state goal needs the model's state probe, but this {model.config.family or 'model'} "
        f"{why}: train with --probe-steps > 0 (or physworld.models.probe.fit_probe), or give "
        "the goal as an observation (goal='obs')"
    )


def object_indices(model: WorldModel, objects: Sequence[str | int] | None) -> list[int]:
    """Object names or indices -> indices into the state vector (names need the model's world)."""
    n_objects = model.config.state_dim // STATE_FIELDS
    if objects is None:
        objects = GOAL_OBJECTS.get(model.config.world, tuple(range(n_objects)))
    names: list[str] | None = None
    out = []
    for obj in objects:
        if isinstance(obj, str):
            names = names if names is not None else world_object_names(model)
            if obj not in names:
                raise ValueError(f"no object {obj!r} in {model.config.world}; objects: {names}")
            obj = names.index(obj)
        if not 0 <= int(obj) < n_objects:
            raise ValueError(f"object index {obj} is out of range: the state holds {n_objects} objects")
        out.append(int(obj))
    if not out:
        raise ValueError("a state goal needs at least one object to compare")
    return out


def world_object_names(model: WorldModel) -> list[str]:
    import gymnasium as gym

    import physworld  # noqa: F401  (registers the worlds)

    if not model.config.world:
        raise ValueError("the model records no world, so objects must be given by index")
    env = gym.make(model.config.world, **{**model.config.world_kwargs, "obs": "state"})
    try:
        return list(env.unwrapped.object_names)
    finally:
        env.close()


def as_model_obs(model: WorldModel, obs: Any, device: torch.device) -> tuple[Tensor, bool]:
    """One observation or a batch (numpy or torch; pixels HWC or CHW) -> ``[E, *obs_shape]``.

    Returns the batch and whether the input was already batched.
    """
    shape = tuple(model.config.obs_shape)
    x = torch.as_tensor(np.asarray(obs) if not isinstance(obs, Tensor) else obs)
    pixels = model.config.obs_kind == "pixels"
    hwc = (shape[1], shape[2], shape[0]) if pixels and len(shape) == 3 else None
    for batched in (False, True):
        event = tuple(x.shape[1:] if batched else x.shape)
        if event == shape or (hwc is not None and event == hwc):
            if event != shape:  # channels last, as environments return frames
                x = x.movedim(-1, -3)
            x = x if batched else x[None]
            x = x.to(device)
            return (x if pixels else x.float()), batched
    want = f"{shape}" + (f" or {hwc} (channels last)" if hwc else "")
    raise ValueError(f"observation of shape {tuple(x.shape)} does not fit the model: want {want}, optionally batched")


# --- the cost -----------------------------------------------------------------------------------


class PlanCost:
    """How far predicted latents are from a goal, summed over the horizon.

    ``goal="state"``: the goal is a ground-truth state, compared through the state probe on
    ``objects`` only (position distance, in world units, summed over those objects). It may be a
    full state vector ``[S]`` or just the objects' positions ``[2 * len(objects)]``, e.g. Push's
    ``info["goal"]``. ``goal="obs"``: the goal is an observation; the cost is the mean squared
    latent distance to its encoding. Per candidate: ``sum_t c_t + terminal_weight * c_H``.

    ``approach`` adds, per step, that weight times the distance from object ``actor`` to a point
    ``approach_offset`` behind each goal object (on its far side from its goal, where a pusher
    stands; 0: the object itself). It shapes worlds where the actor must first reach what it
    moves: the goal distance alone is flat while Push's agent is away from the block. ``None``
    takes the world's default from :data:`SHAPING` (else 0).
    """

    def __init__(
        self,
        model: WorldModel,
        goal: GoalKind = "state",
        objects: Sequence[str | int] | None = None,
        terminal_weight: float = 0.0,
        approach: float | None = None,
        approach_offset: float | None = None,
        actor: str | int = 0,
    ):
        if goal not in ("state", "obs"):
            raise ValueError(f"goal must be 'state' or 'obs', got {goal!r}")
        shaping = SHAPING.get(model.config.world, (0.0, 0.0)) if goal == "state" else (0.0, 0.0)
        approach = shaping[0] if approach is None else approach
        approach_offset = shaping[1] if approach_offset is None else approach_offset
        if terminal_weight < 0 or approach < 0:
            raise ValueError("terminal_weight and approach must be non-negative")
        self.model, self.kind = model, goal
        self.terminal_weight, self.approach = float(terminal_weight), float(approach)
        self.approach_offset = float(approach_offset)
        self.objects: list[int] = []
        self.actor: int | None = None
        if goal == "state":
            check_probe(model)
            self.objects = object_indices(model, objects)
            self.actor = object_indices(model, [actor])[0] if approach else None
        elif approach:
            raise ValueError("the approach term reads object positions: it needs goal='state'")

    @property
    def goal_size(self) -> int:
        return 2 * len(self.objects)

    def target(self, goal: Any, n_envs: int, device: torch.device) -> Tensor:
        """Validate a goal (one, or one per environment) and turn it into ``[E, ...]`` targets:
        goal positions ``[E, n, 2]`` for a state goal, the goal's latent for an observation."""
        if self.kind == "obs":
            x, _ = as_model_obs(self.model, goal, device)
            z = self.model.encode(x)
        else:
            g = torch.as_tensor(np.asarray(goal, np.float32) if not isinstance(goal, Tensor) else goal)
            g = g.to(device, torch.float32)
            s = self.model.config.state_dim
            if g.ndim >= 1 and g.shape[-1] == s:  # full state vectors: take the goal objects
                z = object_positions(g)[..., self.objects, :]
            elif g.ndim >= 1 and g.shape[-1] == self.goal_size:
                z = g.unflatten(-1, (len(self.objects), 2))
            elif g.ndim >= 2 and tuple(g.shape[-2:]) == (len(self.objects), 2):
                z = g
            else:
                raise ValueError(
                    f"state goal of shape {tuple(g.shape)} does not fit: want a state [{s}], or the "
                    f"positions of objects {self.objects} as [{self.goal_size}] or "
                    f"[{len(self.objects)}, 2], optionally with a leading batch dimension"
                )
            z = z if z.ndim == 3 else z[None]
        if len(z) == 1 and n_envs > 1:
            z = z.expand(n_envs, *z.shape[1:])
        if len(z) != n_envs:
            raise ValueError(f"{len(z)} goals for {n_envs} observations: give one goal, or one per observation")
        return z

    def step_costs(self, z: Tensor, target: Tensor) -> Tensor:
        """Predicted latents ``[E, K, H, ...]`` -> per-step costs ``[E, K, H]``."""
        e, k, h = z.shape[:3]
        if self.kind == "obs":
            return (z - target[:, None, None]).pow(2).flatten(3).mean(-1)
        pos = object_positions(self.model.read_state(z.flatten(0, 2))).unflatten(0, (e, k, h))
        cost = (pos[..., self.objects, :] - target[:, None, None]).norm(dim=-1).sum(-1)
        if self.actor is not None:
            obj = pos[..., self.objects, :]
            away = obj - target[:, None, None]  # from the goal to the object
            spot = obj + self.approach_offset * away / away.norm(dim=-1, keepdim=True).clamp_min(1e-6)
            reach = (spot - pos[..., [self.actor], :]).norm(dim=-1).sum(-1)
            cost = cost + self.approach * reach
        return cost

    def __call__(self, z: Tensor, target: Tensor) -> Tensor:
        """Predicted latents ``[E, K, H, ...]`` -> total cost per candidate ``[E, K]``."""
        c = self.step_costs(z, target)
        return c.sum(-1) + self.terminal_weight * c[..., -1]


# --- the planners -----------------------------------------------------------------------------


class Planner:
    """Shared machinery: goal handling, bounds, seeding, the batched rollout, warm starts.

    ``planner.act(obs, goal)`` returns the first action of the best plan for one observation
    (``[A]``) or for a batch of environments (``[E, A]``); the rest of the plan, shifted by one
    step, seeds the next call until :meth:`reset`. For a model whose state is read from several
    frames (``context_frames > 1``: velocity), the planner keeps the observations it was given
    and the actions it returned since the reset, and reads the state from them (it assumes its
    actions were taken). Subclasses implement :meth:`optimize`.
    """

    def __init__(
        self,
        model: WorldModel,
        *,
        horizon: int = 10,
        samples: int = 64,
        iterations: int = 3,
        goal: GoalKind = "state",
        objects: Sequence[str | int] | None = None,
        terminal_weight: float = 0.0,
        approach: float | None = None,
        approach_offset: float | None = None,
        action_low: Sequence[float] | None = None,
        action_high: Sequence[float] | None = None,
        warm_start: bool = True,
        seed: int = 0,
    ):
        for name, value in (("horizon", horizon), ("samples", samples), ("iterations", iterations)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.model = model.eval()
        self.device = model_device(model)
        self.horizon, self.samples, self.iterations = horizon, samples, iterations
        self.cost = PlanCost(model, goal, objects, terminal_weight, approach, approach_offset)
        low, high = action_bounds(model, action_low, action_high)
        self.low = torch.as_tensor(low, device=self.device)
        self.high = torch.as_tensor(high, device=self.device)
        self.mid, self.half = (self.high + self.low) / 2, (self.high - self.low) / 2
        self.warm_start, self.seed = warm_start, seed
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        """Forget the previous plan (call at every episode start); optionally re-seed."""
        if seed is not None:
            self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.previous: Tensor | None = None  # last best plan [E, H, A]
        self.last_cost: Tensor | None = None  # its predicted cost [E]
        self.seen: list[Tensor] = []  # the last context_frames - 1 observations [E, ...]
        self.taken: list[Tensor] = []  # the actions returned after each of them [E, A]

    # --- the public API ------------------------------------------------------------------------
    def act(self, obs: Any, goal: Any) -> np.ndarray:
        """The first action of the best plan: ``[A]`` for one observation, ``[E, A]`` for a batch."""
        plan, batched = self._plan(obs, goal)
        action = plan[:, 0].detach().cpu().numpy().astype(np.float32)
        return action if batched else action[0]

    def plan(self, obs: Any, goal: Any) -> Tensor:
        """The whole best action sequence ``[E, H, A]`` (updates the warm start like :meth:`act`)."""
        return self._plan(obs, goal)[0]

    @torch.no_grad()
    def _plan(self, obs: Any, goal: Any) -> tuple[Tensor, bool]:
        x, batched = as_model_obs(self.model, obs, self.device)
        z0 = self._state(x)
        target = self.cost.target(goal, len(z0), self.device)
        init = self._initial(len(z0))
        best, cost = self.optimize(z0, target, init)
        best = best.clamp(self.low, self.high)
        self.previous, self.last_cost = best, cost
        keep = self.model.context_frames - 1
        if keep:
            self.seen, self.taken = (self.seen + [x])[-keep:], (self.taken + [best[:, 0]])[-keep:]
        return best, batched

    def _state(self, x: Tensor) -> Tensor:
        """The model's state for observations ``x [E, ...]``, read with the ones seen before."""
        if not self.seen or len(self.seen[0]) != len(x):  # a first step, or another batch
            self.seen, self.taken = [], []
            return self.model.encode(x)
        clip = torch.stack([*self.seen, x], 1)
        return self.model.encode_context(clip, torch.stack(self.taken, 1))

    # --- shared pieces -------------------------------------------------------------------------
    def _initial(self, n_envs: int) -> Tensor:
        """The previous plan shifted by one step (its last action repeated), else the box centre."""
        prev = self.previous
        if self.warm_start and prev is not None and len(prev) == n_envs:
            return torch.cat([prev[:, 1:], prev[:, -1:]], 1)
        return self.mid.expand(n_envs, self.horizon, -1).clone()

    def evaluate(self, z0: Tensor, target: Tensor, actions: Tensor) -> Tensor:
        """Roll candidates ``[E, K, H, A]`` out from ``z0 [E, ...]``: their costs ``[E, K]``.

        One ``predict`` call for all environments and candidates: the predictor loops over
        time only, so a planning step costs ``H`` batched network passes.
        """
        e, k = actions.shape[:2]
        z = z0.repeat_interleave(k, 0)
        pred = self.model.predict(z, actions.flatten(0, 1))  # [E*K, H, ...]
        return self.cost(pred.unflatten(0, (e, k)), target)

    def sample(self, mean: Tensor, std: Tensor, k: int) -> Tensor:
        """``k`` Gaussian candidates ``[E, k, H, A]`` around ``mean``, inside the bounds; candidate 0
        is ``mean`` itself, so a good warm start is never lost."""
        noise = torch.randn((len(mean), k, *mean.shape[1:]), generator=self.generator, device=self.device)
        noise[:, 0] = 0
        return (mean[:, None] + std[:, None] * noise).clamp(self.low, self.high)

    def optimize(self, z0: Tensor, target: Tensor, init: Tensor) -> tuple[Tensor, Tensor]:
        """Best sequences ``[E, H, A]`` and their costs ``[E]``, starting from ``init``."""
        raise NotImplementedError


def best_of(candidates: Tensor, costs: Tensor) -> tuple[Tensor, Tensor]:
    """Per environment, the lowest-cost candidate: ``[E, K, H, A], [E, K] -> [E, H, A], [E]``."""
    cost, idx = costs.min(1)
    return candidates[torch.arange(len(idx), device=idx.device), idx], cost


class CEMPlanner(Planner):
    """Cross-entropy method: sample around a Gaussian, refit it to the ``elites`` best, repeat.

    ``std`` is the initial spread as a fraction of the half-range of each action dimension;
    it shrinks no further than ``min_std``. The best candidate seen is the plan.
    """

    def __init__(self, model: WorldModel, *, elites: int = 8, std: float = 0.5, min_std: float = 0.05, **kwargs):
        super().__init__(model, **kwargs)
        if not 1 <= elites <= self.samples:
            raise ValueError(f"elites must be in [1, samples={self.samples}], got {elites}")
        self.elites, self.std, self.min_std = elites, std, min_std

    def optimize(self, z0: Tensor, target: Tensor, init: Tensor) -> tuple[Tensor, Tensor]:
        mean, std = init, (self.std * self.half).expand_as(init)
        best, best_cost = init, torch.full((len(init),), math.inf, device=self.device)
        for _ in range(self.iterations):
            cand = self.sample(mean, std, self.samples)
            costs = self.evaluate(z0, target, cand)
            it_best, it_cost = best_of(cand, costs)
            better = it_cost < best_cost
            best = torch.where(better[:, None, None], it_best, best)
            best_cost = torch.minimum(it_cost, best_cost)
            idx = costs.topk(self.elites, 1, largest=False).indices
            elite = cand.gather(1, idx[..., None, None].expand(-1, -1, *cand.shape[2:]))
            mean = elite.mean(1)
            std = elite.std(1, unbiased=False).clamp_min(self.min_std * self.half)
        return best, best_cost


class MPPIPlanner(Planner):
    """Model-predictive path integral: a softmax-weighted average of noisy candidates.

    Weights are ``softmax(-cost / (temperature * cost range))`` so ``temperature`` means the
    same for any cost scale; ``std`` is the noise as a fraction of the action half-range.
    """

    def __init__(self, model: WorldModel, *, std: float = 0.5, temperature: float = 0.03, **kwargs):
        super().__init__(model, **kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.std, self.temperature = std, temperature

    def optimize(self, z0: Tensor, target: Tensor, init: Tensor) -> tuple[Tensor, Tensor]:
        mean, std = init, (self.std * self.half).expand_as(init)
        for _ in range(self.iterations):
            cand = self.sample(mean, std, self.samples)
            costs = self.evaluate(z0, target, cand)
            low = costs.min(1, keepdim=True).values
            spread = (costs.max(1, keepdim=True).values - low).clamp_min(1e-8)
            w = torch.softmax(-(costs - low) / (self.temperature * spread), 1)
            mean = (w[..., None, None] * cand).sum(1)
        return mean, costs[:, 0]  # the cost of candidate 0: the mean before its last update


class GradientPlanner(Planner):
    """Adam on the action sequences, through the differentiable predictor and cost.

    ``samples`` sequences are optimised in parallel (the warm start plus random restarts) for
    ``iterations`` steps; actions are ``mid + half * tanh(u)``, so they stay in bounds while
    ``u`` is unconstrained. The best sequence seen is the plan.
    """

    def __init__(self, model: WorldModel, *, lr: float = 0.3, iterations: int = 10, samples: int = 8, **kwargs):
        super().__init__(model, iterations=iterations, samples=samples, **kwargs)
        self.lr = lr

    def optimize(self, z0: Tensor, target: Tensor, init: Tensor) -> tuple[Tensor, Tensor]:
        start = self.sample(init, self.half.expand_as(init), self.samples)
        unit = ((start - self.mid) / self.half).clamp(-0.999, 0.999)
        u = torch.atanh(unit).requires_grad_(True)
        opt = torch.optim.Adam([u], lr=self.lr)
        best, best_cost = init, torch.full((len(init),), math.inf, device=self.device)
        with torch.enable_grad():
            for _ in range(self.iterations):
                actions = self.mid + self.half * torch.tanh(u)
                costs = self.evaluate(z0, target, actions)
                it_best, it_cost = best_of(actions.detach(), costs.detach())
                better = it_cost < best_cost
                best = torch.where(better[:, None, None], it_best, best)
                best_cost = torch.minimum(it_cost, best_cost)
                (grad,) = torch.autograd.grad(costs.sum(), [u])  # never into the model's weights
                u.grad = grad
                opt.step()
        return best, best_cost


PLANNERS: dict[str, type[Planner]] = {"cem": CEMPlanner, "mppi": MPPIPlanner, "gradient": GradientPlanner}


def make_planner(name: str, model: WorldModel, **kwargs: Any) -> Planner:
    """A planner by name (``cem``, ``mppi``, ``gradient``)."""
    check_choice("planner", name, PLANNERS)
    return PLANNERS[name](model, **kwargs)
