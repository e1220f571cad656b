"""physbench multi-step manipulation: two-block Push, its expert, the staged MPC and the task's run."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import physworld  # noqa: F401  (registers the worlds)
from physworld.eval.bench import manipulation
from physworld.eval.bench.base import TrainBudget
from physworld.worlds import Push


@pytest.mark.parametrize("obs", ["state", "pixels"])
def test_two_block_push_passes_check_env(obs: str):
    env = gym.make("physworld/Push-v0", n_blocks=2, obs=obs, render_mode="rgb_array").unwrapped
    check_env(env, skip_render_check=False)
    _, info = env.reset(seed=0)
    assert env.n_objects == 3 and env.object_names == ["agent", "block", "block2"]
    assert info["goal"].shape == (4,) and info["stage"] == 0 and info["is_success"] is False


def test_two_block_push_is_deterministic_and_staged():
    env = Push(n_blocks=2, obs="state")
    a, info = env.reset(seed=3)
    b, _ = env.reset(seed=3)
    assert np.array_equal(a, b) and not np.array_equal(a, env.reset(seed=4)[0])
    # block A placed on its goal: the stage moves on to block B
    c, info = env.reset(seed=3, options={"solved": 1})
    goals = info["goal"].reshape(2, 2)
    assert np.allclose(c.reshape(3, 6)[1, :2], goals[0]) and info["stage"] == 1
    assert np.array_equal(c.reshape(3, 6)[2], a.reshape(3, 6)[2])
    with pytest.raises(ValueError, match="solved"):
        env.reset(seed=3, options={"solved": 2})
    with pytest.raises(ValueError, match="n_blocks"):
        Push(n_blocks=0)


def test_expert_solves_two_block_push_in_order():
    env = Push(n_blocks=2, obs="state", max_steps=200)
    wins = 0
    for seed in range(10):
        _, info = env.reset(seed=seed)
        stages = [info["stage"]]
        for _ in range(200):
            _, _, terminated, truncated, info = env.step(env.expert_action())
            stages.append(info["stage"])
            if terminated or truncated:
                break
        if info["is_success"]:
            wins += 1
            assert stages[-1] == 2 and 1 in stages  # block A was done before block B
    assert wins >= 8  # measured: 27/30 over seeds 0-29 (median 82 steps)


@pytest.fixture(scope="module")
def tiny_model(train_tiny):
    return train_tiny(manipulation.ManipulationTask(), TrainBudget(episodes=6, steps=20, policy="mixed", probe_steps=30, extra={"latent_dim": 16}))


def test_staged_planner_follows_the_stage(tiny_model):
    model, _ = tiny_model
    env = gym.make("physworld/Push-v0", obs="state", n_blocks=2)
    controller = manipulation.controllers(model, [env], seed=0)["model"]
    controller.reset(0)
    obs, info = env.reset(seed=1, options={"solved": 1})
    action = controller.act(obs[None], info["goal"][None])
    assert action.shape == (1, 2) and np.abs(action).max() <= 1.0
    assert controller.active == [1] and controller.planners[0].previous is None
    assert controller.planners[1].previous is not None


def test_run_returns_a_well_formed_result(tiny_model, monkeypatch):
    monkeypatch.setattr(manipulation, "EPISODES", {True: 1, False: 1})
    monkeypatch.setattr(manipulation, "STEPS", {2: 15, 1: 10})
    model, cfg = tiny_model
    result = manipulation.ManipulationTask().run(model, cfg)
    kinds = {r.kind for r in result.rows}
    assert kinds == {"model", "baseline", "oracle"} and result.model_value() is not None
    assert all(0.0 <= r.value <= 100.0 for r in result.rows) and len(result.rows) == 6
    assert result.details["two-block"]["model"]["plan_ms_median"] > 0
    json.dumps(result.details)
    assert len(result.sections) == 2 and "<img" in result.sections[1]


def test_run_refuses_models_that_cannot_plan(tiny_model, copy_model):
    model, cfg = tiny_model
    with pytest.raises(ValueError, match="n_blocks=2"):
        manipulation.ManipulationTask().run(copy_model(model, world_kwargs={"n_blocks": 1}), cfg)
    with pytest.raises(ValueError, match="probe"):
        manipulation.ManipulationTask().run(copy_model(model, unfitted_probe=True), cfg)
