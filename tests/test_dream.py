"""The dream environment: Gymnasium conformance, agreement with an exact model, vector env, errors."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from test_plan import WORLD, NoProbe, PointMass, point_config

import physworld  # noqa: F401  (registers physworld/Dream-v0)
from physworld.plan import DreamEnv, DreamVectorEnv, RealWorldObservation

torch.set_num_threads(1)


def test_import_physworld_registers_the_dream_without_importing_torch():
    """Env worker processes import physworld; registering the dream must not cost them torch."""
    script = "import sys, gymnasium as gym, physworld; print('physworld/Dream-v0' in gym.registry, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False"]


@pytest.mark.parametrize("obs", ["latent", "state"])
def test_dream_env_passes_check_env(obs):
    env = gym.make("physworld/Dream-v0", model=PointMass(), obs=obs, render_mode="rgb_array").unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no checker warning either
        check_env(env, skip_render_check=False)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == (32, 32, 3)


def test_gym_make_finds_the_dream_from_a_model_or_a_path(tmp_path):
    model = PointMass()
    model.save(tmp_path / "pm")
    for source in (model, tmp_path / "pm", str(tmp_path)):
        if source == str(tmp_path):  # a run folder holding model/
            model.save(tmp_path / "model")
        env = gym.make("physworld/Dream-v0", model=source, world=WORLD)
        obs, info = env.reset(seed=0)
        assert isinstance(env.unwrapped, DreamEnv) and obs.shape == (6 + 2,)
        env.close()


def test_the_dream_of_an_exact_model_is_the_real_world():
    """With a perfect model, dream and real world agree step by step (observation, reward, end)."""
    dream = DreamEnv(PointMass(), obs="state", context=3)
    real = RealWorldObservation(gym.make(WORLD), dream)  # the real world in the dream's layout
    obs_d, _ = dream.reset(seed=5)
    obs_r, info = real.reset(seed=5)
    np.testing.assert_allclose(obs_d, obs_r, atol=1e-5)
    np.testing.assert_allclose(obs_r[6:], info["goal"])
    rng = np.random.default_rng(0)
    for _ in range(40):
        heading = info["goal"] - info["state"][:2]
        action = np.clip(heading + rng.normal(0, 0.3, 2), -1, 1).astype(np.float32)
        obs_d, r_d, term_d, trunc_d, info_d = dream.step(action)
        obs_r, r_r, term_r, trunc_r, info = real.step(action)
        np.testing.assert_allclose(obs_d, obs_r, atol=1e-4)
        assert r_d == pytest.approx(r_r, abs=1e-5) and (term_d, trunc_d) == (term_r, trunc_r)
        assert info_d["is_success"] == info["is_success"]
        if term_r or trunc_r:
            break
    assert term_r  # the noisy heading policy reached the goal


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_dream_vector_env_batches_and_autoresets(mode):
    envs = gym.make_vec("physworld/Dream-v0", num_envs=3, model=PointMass(), world=WORLD, max_steps=4, autoreset_mode=mode)
    assert isinstance(envs.unwrapped, DreamVectorEnv) and envs.metadata["autoreset_mode"] == mode
    obs, info = envs.reset(seed=0)
    single = DreamEnv(PointMass())
    np.testing.assert_allclose(obs[1], single.reset(seed=1)[0])  # env i starts from seed + i
    assert obs.shape == (3, 8) and info["state"].shape == (3, 6)
    actions = np.tile(np.array([[0.5, -0.5]], np.float32), (3, 1))
    for t in range(4):
        obs, reward, terminated, truncated, info = envs.step(actions)
        assert obs.shape == (3, 8) and reward.shape == (3,) and reward.dtype == np.float32
        if t < 3:
            np.testing.assert_allclose(obs[1], single.step(actions[1])[0], atol=1e-5)
    assert truncated.all()  # the step limit (no goal reached with this action)
    if mode == AutoresetMode.SAME_STEP:
        assert info["_final_obs"].all() and info["final_obs"][0].shape == (8,)
        assert not np.allclose(obs[0], info["final_obs"][0])
    else:
        obs, reward, terminated, truncated, _ = envs.step(actions)  # this step resets
        assert (reward == 0).all() and not truncated.any()
    envs.close()


def test_shaped_reward_is_the_planners_cost():
    """Without shaping for this world, the planners' cost is the goal distance: same rewards."""
    goal, shaped = DreamEnv(PointMass()), DreamEnv(PointMass(), reward="shaped")
    goal.reset(seed=3)
    shaped.reset(seed=3)
    action = np.array([0.5, 0.2], np.float32)
    assert goal.step(action)[1] == pytest.approx(shaped.step(action)[1])
    with pytest.raises(ValueError, match="reward must be"):
        DreamEnv(PointMass(), reward="sparse")


def test_dream_renders_the_probe_state_with_the_worlds_renderer():
    env = DreamEnv(PointMass(), render_mode="rgb_array")
    env.reset(seed=0)
    before = env.render()
    env.step(np.array([1.0, 1.0], np.float32))
    assert not np.array_equal(before, env.render())  # the mass moved in the picture


def test_dream_on_push_with_a_jepa():
    """A tiny untrained JEPA on Push states: the dream runs, rewards like the real world's."""
    from physworld.models import JEPA, JEPAConfig

    config = JEPAConfig(
        obs_kind="state", obs_shape=(12,), action_dim=2, action_low=[-1, -1], action_high=[1, 1],
        state_dim=12, world="physworld/Push-v0", world_kwargs={"obs": "state"}, arena_size=10.0,
        latent_dim=16, encoder_width=8, predictor_width=32, predictor_depth=1, sigreg_projections=8,
    )
    model = JEPA(config)
    model.probe.reset(torch.randn(64, 16), torch.randn(64, 12))
    model.probe.fitted.fill_(True)
    env = gym.make("physworld/Dream-v0", model=model, render_mode="rgb_array")
    obs, info = env.reset(seed=0)
    assert obs.shape == (16 + 2,) and info["goal"].shape == (2,)
    _, reward, *_ = env.step(env.action_space.sample())
    assert reward <= 0
    assert env.render().shape == (64, 64, 3)


# --- bad input ---------------------------------------------------------------------------------


def test_dream_without_a_probe_is_refused():
    with pytest.raises(ValueError, match="state probe"):
        DreamEnv(NoProbe())


def test_dream_refuses_another_world_and_unknown_options():
    with pytest.raises(ValueError, match="trained on"):
        DreamEnv(PointMass(), world="physworld/Push-v0")
    with pytest.raises(ValueError, match="obs must be"):
        DreamEnv(PointMass(), obs="pixels")
    with pytest.raises(ValueError, match="context"):
        DreamEnv(PointMass(), context=0)


def test_dream_refuses_action_bounds_beyond_training():
    with pytest.raises(ValueError, match="trained with"):
        DreamEnv(PointMass(), action_low=[-2, -2], action_high=[2, 2])
    env = DreamEnv(PointMass(), action_low=[-0.5, -0.5], action_high=[0.5, 0.5])
    assert env.action_space.high.tolist() == [0.5, 0.5]


def test_dream_needs_a_world():
    with pytest.raises(ValueError, match="no world"):
        DreamEnv(PointMass(point_config(world="")))
