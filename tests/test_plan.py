"""Planners and the MPC loop on a hand-built point mass whose optimum is known.

The point mass is an exact, differentiable "world model": its latent *is* the state
``[x, y, vx, vy, 0, 0]`` and an action is the velocity (``speed`` units per step), so the best
plan toward a goal is to move straight at it, and planning errors are the planners' own.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from physworld.models.base import ModelConfig, WorldModel, register_model
from physworld.plan import (
    CEMPlanner,
    ExpertPolicy,
    GradientPlanner,
    MPPIPlanner,
    RandomPolicy,
    make_planner,
    run_mpc,
)
from physworld.plan.planners import PLANNERS

torch.set_num_threads(1)
WORLD = "test/PointMass-v0"
FAST = {"cem": {"samples": 64, "iterations": 4}, "mppi": {"samples": 64, "iterations": 8}, "gradient": {}}


def point_config(**kw) -> ModelConfig:
    base = dict(
        family="pointmass", obs_kind="state", obs_shape=(6,), action_dim=2, action_low=[-1.0, -1.0],
        action_high=[1.0, 1.0], state_dim=6, world=WORLD, world_kwargs={}, arena_size=10.0,
    )
    return ModelConfig(**{**base, **kw})


@register_model("pointmass")
class PointMass(WorldModel):
    """z = state; each step moves by ``speed * a`` and sets the velocity to it."""

    def __init__(self, config: ModelConfig | dict | None = None, probe: bool = True):
        super().__init__(config or point_config())
        self.speed = torch.nn.Parameter(torch.tensor(1.0))
        self.has_probe = probe

    def encode(self, obs):
        return obs.float()

    def predict(self, z, actions):
        self.check_actions(actions)
        out, pos = [], z[:, :2]
        for t in range(actions.shape[1]):
            v = self.speed * actions[:, t]
            pos = pos + v
            out.append(torch.cat([pos, v, torch.zeros_like(v)], -1))
        return torch.stack(out, 1)

    def read_state(self, z):
        if not self.has_probe:
            return super().read_state(z)
        return z


class NoProbe(PointMass):
    """The same model without an overridden read_state: it has no probe."""

    read_state = WorldModel.read_state


class PointMassEnv(gym.Env):
    """The real point mass: a start and a goal in a 10x10 arena; success within 0.3."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, obs: str = "state", max_steps: int = 40, render_mode=None):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (6,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.max_steps, self.render_mode = max_steps, render_mode
        self.state = np.zeros(6, np.float32)
        self.object_names = ["mass"]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = np.zeros(6, np.float32)
        self.state[:2] = self.np_random.uniform(1, 9, 2)
        self.goal = self.np_random.uniform(1, 9, 2).astype(np.float32)
        self.t = 0
        return self.state.copy(), self._info()

    def _info(self):
        success = float(np.linalg.norm(self.state[:2] - self.goal)) <= 0.3
        return {"state": self.state.copy(), "goal": self.goal.copy(), "is_success": success,
                "params": {"goal_tolerance": 0.3}}

    def step(self, action):
        a = np.clip(np.asarray(action, np.float32), -1, 1)
        self.state[:2] += a
        self.state[2:4] = a
        self.t += 1
        info = self._info()
        reward = -float(np.linalg.norm(self.state[:2] - self.goal)) / 10
        return self.state.copy(), reward, info["is_success"], self.t >= self.max_steps, info

    def render_state(self, state):
        img = np.zeros((32, 32, 3), np.uint8)
        x, y = (np.clip(np.asarray(state[:2]), 0, 9.99) * 3.2).astype(int)
        img[31 - y, x] = 255
        return img

    def render(self):
        return self.render_state(self.state)


if WORLD not in gym.registry:
    gym.register(WORLD, entry_point=PointMassEnv)


def random_cost(planner, z0, goal, k=256) -> float:
    """Mean cost of uniform random action sequences, for comparison."""
    target = planner.cost.target(goal, 1, planner.device)
    gen = torch.Generator().manual_seed(1)
    actions = torch.rand((1, k, planner.horizon, 2), generator=gen) * 2 - 1
    with torch.no_grad():
        return float(planner.evaluate(z0, target, actions).mean())


START = np.array([2.0, 2.0, 0, 0, 0, 0], np.float32)
GOAL = np.array([5.0, 6.0], np.float32)  # 5 units away: 5 steps of at most sqrt(2)


@pytest.mark.parametrize("name", list(PLANNERS))
def test_planners_beat_random_and_approach_the_optimum(name):
    model = PointMass()
    planner = make_planner(name, model, horizon=6, seed=0, **FAST[name])
    plan = planner.plan(START, GOAL)
    z0 = torch.as_tensor(START)[None]
    target = planner.cost.target(GOAL, 1, planner.device)
    with torch.no_grad():
        cost = float(planner.evaluate(z0, target, plan[:, None]))
    # the optimum heads straight for the goal at full speed (clipped per axis), then stays
    best = torch.zeros(1, 1, 6, 2)
    pos = torch.as_tensor(START[:2]).clone()
    for t in range(6):
        step = (torch.as_tensor(GOAL) - pos).clamp(-1, 1)
        best[0, 0, t], pos = step, pos + step
    with torch.no_grad():
        optimum = float(planner.evaluate(z0, target, best))
    assert cost < 0.5 * random_cost(planner, z0, GOAL)
    assert cost < optimum + 0.15 * (random_cost(planner, z0, GOAL) - optimum)
    first = planner.act(START, GOAL)
    assert first.shape == (2,) and first[0] > 0.5 and first[1] > 0.5  # up and to the right


@pytest.mark.parametrize("name", list(PLANNERS))
def test_planners_respect_bounds(name):
    model = PointMass()
    planner = make_planner(name, model, horizon=5, seed=0, action_low=[-0.3, -0.5], action_high=[0.3, 0.5], **FAST[name])
    far = np.array([9.5, 9.5], np.float32)
    plan = planner.plan(START, far)
    assert (plan[..., 0].abs() <= 0.3 + 1e-6).all() and (plan[..., 1].abs() <= 0.5 + 1e-6).all()
    np.testing.assert_allclose(planner.act(START, far), [0.3, 0.5], atol=0.05)  # pushes against the box


@pytest.mark.parametrize("name", list(PLANNERS))
def test_planners_are_deterministic_with_a_seed(name):
    model = PointMass()
    a = make_planner(name, model, seed=3, **FAST[name]).plan(START, GOAL)
    b = make_planner(name, model, seed=3, **FAST[name]).plan(START, GOAL)
    c = make_planner(name, model, seed=4, **FAST[name]).plan(START, GOAL)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", list(PLANNERS))
def test_planners_batch_over_environments(name):
    model = PointMass()
    starts = np.stack([START, START, START])
    goals = np.array([[8.0, 2.0], [2.0, 8.0], [0.5, 0.5]], np.float32)
    actions = make_planner(name, model, horizon=5, seed=0, **FAST[name]).act(starts, goals)
    assert actions.shape == (3, 2)
    heading = goals - START[:2]  # each environment heads for its own goal
    cosine = (actions * heading).sum(1) / np.linalg.norm(actions, axis=1) / np.linalg.norm(heading, axis=1)
    assert (cosine > 0.7).all(), actions
    one_goal = make_planner(name, model, horizon=5, seed=0, **FAST[name]).act(starts, goals[0])
    assert one_goal.shape == (3, 2)  # one goal broadcasts to every environment


def test_observation_goal_plans_in_latent_space():
    model = PointMass()
    goal_obs = np.array([5.0, 6.0, 0, 0, 0, 0], np.float32)
    planner = CEMPlanner(model, goal="obs", horizon=6, samples=64, iterations=4, seed=0)
    assert (planner.act(START, goal_obs) > 0.5).all()


def test_warm_start_shifts_the_previous_plan():
    model = PointMass()
    planner = CEMPlanner(model, horizon=4, samples=32, iterations=2, seed=0)
    first = planner.plan(START, GOAL).clone()
    init = planner._initial(1)
    torch.testing.assert_close(init[:, :-1], first[:, 1:])
    torch.testing.assert_close(init[:, -1], first[:, -1])
    planner.reset()
    torch.testing.assert_close(planner._initial(1), torch.zeros(1, 4, 2))


class TwoFramePointMass(PointMass):
    """Reads its state from two frames, and records the clips it was given."""

    context_frames = 2

    def __init__(self):
        super().__init__()
        self.clips: list[tuple[torch.Tensor, torch.Tensor]] = []

    def encode_context(self, obs, actions):
        self.clips.append((obs, actions))
        return self.encode(obs[:, -1])


def test_planner_reads_a_context_model_state_from_what_it_saw_and_did():
    model = TwoFramePointMass()
    planner = CEMPlanner(model, horizon=4, samples=32, iterations=2, seed=0)
    first = planner.act(START, GOAL)
    assert not model.clips  # nothing seen before the first step
    later = START.copy()
    later[:2] += first
    planner.act(later, GOAL)
    (clip, actions), = model.clips
    torch.testing.assert_close(clip[0], torch.from_numpy(np.stack([START, later])))
    torch.testing.assert_close(actions[0, 0], torch.from_numpy(first))
    planner.reset()
    planner.act(START, GOAL)
    assert len(model.clips) == 1  # a new episode starts from its first observation alone


@pytest.mark.parametrize("name", list(PLANNERS))
def test_mpc_reaches_the_goal_on_the_point_mass(name):
    model = PointMass()
    planner = make_planner(name, model, horizon=5, seed=0, **FAST[name])
    envs = [gym.make(WORLD) for _ in range(2)]
    episodes = run_mpc(envs, planner, seeds=[0, 1, 2, 3], steps=30, objects=[0])
    assert [e.seed for e in episodes] == [0, 1, 2, 3]
    assert all(e.success for e in episodes), [e.final_distance for e in episodes]
    assert all(e.final_distance <= 0.3 and e.steps <= 12 for e in episodes)
    assert all(len(e.plan_ms) == e.steps and len(e.states) == e.steps + 1 for e in episodes)
    random = run_mpc(envs, RandomPolicy(envs[0].action_space, 0), seeds=[0, 1, 2, 3], steps=30, objects=[0])
    assert np.mean([e.final_distance for e in random]) > 1.0
    with pytest.raises(ValueError, match="scripted expert"):
        ExpertPolicy(envs)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("goal", [np.zeros(3), np.zeros((2, 3)), np.zeros((4, 2)), np.zeros(7)])
def test_wrong_goal_shape_is_refused(goal):
    with pytest.raises(ValueError, match="goal"):
        CEMPlanner(PointMass(), samples=8, iterations=1).act(np.stack([START, START]), goal)


def test_wrong_observation_goal_or_observation_shape_is_refused():
    planner = CEMPlanner(PointMass(), goal="obs", samples=8, iterations=1)
    with pytest.raises(ValueError, match="observation of shape"):
        planner.act(START, np.zeros(4))
    with pytest.raises(ValueError, match="observation of shape"):
        planner.act(np.zeros(5), np.zeros(6))


@pytest.mark.parametrize("low, high", [([-2, -1], [1, 1]), ([-1, -1], [1, 1.5]), ([-1, -1, -1], [1, 1, 1]), ([1, 0], [0, 1])])
def test_action_bounds_the_model_was_not_trained_with_are_refused(low, high):
    with pytest.raises(ValueError, match="action|bounds"):
        CEMPlanner(PointMass(), action_low=low, action_high=high)


def test_model_without_recorded_bounds_needs_explicit_ones():
    model = PointMass(point_config(action_low=[], action_high=[]))
    with pytest.raises(ValueError, match="records no action bounds"):
        CEMPlanner(model)
    CEMPlanner(model, action_low=[-1, -1], action_high=[1, 1])


def test_state_goal_without_a_probe_is_refused():
    with pytest.raises(ValueError, match="state probe"):
        CEMPlanner(NoProbe())
    CEMPlanner(NoProbe(), goal="obs")  # an observation goal needs no probe


@pytest.mark.parametrize("kwargs, match", [
    ({"horizon": 0}, "horizon"), ({"samples": 0}, "samples"), ({"goal": "pixels"}, "goal"),
    ({"objects": [3]}, "out of range"), ({"objects": ["block"]}, "no object"),
])
def test_bad_planner_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CEMPlanner(PointMass(), **kwargs)


def test_unknown_planner_name():
    with pytest.raises(ValueError, match="unknown planner"):
        make_planner("rrt", PointMass())


def test_planner_api_on_a_jepa_for_push():
    """The real thing, tiny and untrained: a JEPA on Push states plans for info['goal']."""
    from physworld.models import JEPA, JEPAConfig

    env = gym.make("physworld/Push-v0", obs="state")
    obs, info = env.reset(seed=0)
    config = JEPAConfig(
        obs_kind="state", obs_shape=(12,), action_dim=2, action_low=[-1, -1], action_high=[1, 1],
        state_dim=12, world="physworld/Push-v0", world_kwargs={"obs": "state"}, arena_size=10.0,
        latent_dim=16, encoder_width=8, predictor_width=32, predictor_depth=1, sigreg_projections=8,
    )
    model = JEPA(config)
    with torch.no_grad():
        z = model.encode(torch.randn(64, 12))
    model.probe.reset(z, torch.randn(64, 12))
    model.probe.fitted.fill_(True)
    for cls in (CEMPlanner, MPPIPlanner, GradientPlanner):
        planner = cls(model, horizon=3, samples=8, iterations=2, seed=0)
        assert planner.cost.objects == [1]  # Push's goal is about the block
        action = planner.act(obs, info["goal"])
        assert action.shape == (2,) and env.action_space.contains(action)
    assert not math.isnan(float(planner.last_cost))


def test_plan_evaluation_writes_json_and_html(tmp_path):
    """`physworld plan` end to end on the point mass: results.json, report.html, planning times."""
    import json

    from physworld.eval.planning import PlanConfig, evaluate_planning, run_planning

    model = PointMass()
    model.save(tmp_path / "run" / "model")
    cfg = PlanConfig(model=tmp_path / "run", episodes=3, samples=32, iterations=2, horizon=5, steps=20,
                     animations=2, threads=1, out=tmp_path / "report")
    out = run_planning(cfg)
    results = json.loads((out / "results.json").read_text())
    cem = results["controllers"]["cem"]
    assert cem["success_rate"] == 1.0 and cem["plan_ms_median"] > 0 and cem["plan_ms_p95"] >= cem["plan_ms_median"]
    assert results["controllers"]["random"]["success_rate"] < 1.0 and "expert" not in results["controllers"]
    assert len(cem["episodes"]) == 3 and cem["steps_to_success_median"] <= 12
    page = (out / "report.html").read_text()
    assert "Planning" in page and page.count("image/gif") == 2
    with pytest.raises(ValueError, match="trained on"):
        evaluate_planning(PlanConfig(model=tmp_path / "run", world="physworld/Push-v0"))
    with pytest.raises(ValueError, match="observation"):
        evaluate_planning(PlanConfig(model=tmp_path / "run", goal="obs"))


def test_push_goal_observation_pictures_the_block_on_the_goal():
    from physworld.eval.planning import push_goal_observation

    env = gym.make("physworld/Push-v0", obs="state")
    _, info = env.reset(seed=0)
    goal = push_goal_observation(env, info)
    np.testing.assert_allclose(goal[6:8], info["goal"])
    assert np.linalg.norm(goal[:2] - goal[6:8]) > 1.0  # the agent stands behind the block
    pixels = gym.make("physworld/Push-v0")
    frame = push_goal_observation(pixels, pixels.reset(seed=0)[1])
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
