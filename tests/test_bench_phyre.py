"""physbench Mini-PHYRE: the world, PHYRE's AUCCESS, the engine's ground truth, and the task's run."""

from __future__ import annotations

import json
import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import physworld  # noqa: F401  (registers the worlds)
from physworld.eval.bench import phyre
from physworld.eval.bench.base import TrainBudget
from physworld.eval.bench.readout import Readout
from physworld.worlds.phyre import (
    BLUE,
    BLUE_RADIUS,
    GREEN,
    GREEN_RADIUS,
    RED,
    RED_RADIUS,
    TEMPLATES,
    MiniPhyre,
)


@pytest.mark.parametrize("obs", ["state", "pixels"])
def test_world_passes_check_env(obs: str):
    env = gym.make("physworld/MiniPhyre-v0", obs=obs, render_mode="rgb_array").unwrapped
    with warnings.catch_warnings():  # the no-op action space Box(0, 0) is intended
        warnings.filterwarnings("ignore", ".*A Box action space maximum and minimum")
        check_env(env, skip_render_check=False)
    assert env.n_objects == 6 and env.action_space.shape == (1,)


def test_world_is_deterministic_and_placement_changes_only_the_red_ball():
    env = MiniPhyre(obs="state")
    a, _ = env.reset(seed=5)
    spots = env.sample_placements(2, np.random.default_rng(0))
    b, _ = env.reset(seed=5)
    assert np.array_equal(a, b)
    c, info = env.reset(seed=5, options={"placement": spots[1]})
    assert np.allclose(c.reshape(6, 6)[RED, :2], spots[1])
    assert np.array_equal(np.delete(c.reshape(6, 6), RED, 0), np.delete(a.reshape(6, 6), RED, 0))
    assert info["template"] in TEMPLATES and info["is_success"] is False
    d, _ = env.reset(seed=6)
    assert not np.array_equal(a, d)
    with pytest.raises(ValueError, match="overlaps"):
        env.reset(seed=5, options={"placement": a.reshape(6, 6)[GREEN, :2]})  # on the green ball
    with pytest.raises(ValueError, match="templates"):
        MiniPhyre(templates=(9,))


def test_auccess_on_hand_made_cases():
    w = phyre.auccess_weights(100)
    assert w[0] == pytest.approx(math.log(2)) and w.sum() == pytest.approx(math.log(101))
    first = np.ones((1, 100))
    never = np.zeros((1, 100))
    second = np.ones((1, 100))
    second[0, 0] = 0
    assert phyre.auccess(first) == pytest.approx(100.0)
    assert phyre.auccess(never) == 0.0
    assert phyre.auccess(second) == pytest.approx(100 * (1 - math.log(2) / math.log(101)))
    assert phyre.auccess(np.concatenate([first, never])) == pytest.approx(50.0)
    solved = np.array([False, True, False, False])
    assert phyre.ranked_curve(np.array([1, 0, 2, 3]), solved).tolist() == [1, 1, 1, 1]
    assert phyre.ranked_curve(np.array([0, 2, 1, 3]), solved).tolist() == [0, 0, 1, 1]
    # the exact chance curve agrees with averaging every order of a small question
    rng = np.random.default_rng(0)
    mc = np.mean([phyre.ranked_curve(rng.permutation(4), solved) for _ in range(20000)], 0)
    assert np.allclose(phyre.chance_curve(solved), [0.25, 0.5, 0.75, 1.0]) and np.allclose(mc, [0.25, 0.5, 0.75, 1], atol=0.02)


def test_engine_ground_truth_and_oracle(monkeypatch):
    monkeypatch.setattr(phyre, "CANDIDATES", 40)
    questions, skipped = phyre.make_questions((0,), 2, phyre.SEED_BASE)
    assert len(questions) == 2 and skipped >= 0
    for q in questions:
        assert q.solved.any() and q.placements.shape == (40, 2)
        win = int(np.flatnonzero(q.solved)[0])
        env = phyre.make_env((q.template,))
        states, ok = phyre.simulate(env, q.seed, q.placements[win])
        assert ok and np.array_equal(states[0], q.start[win])
        # the green ball did come within touching distance of the blue one
        assert phyre.min_gap(states[None])[0] < 0.05
        oracle = phyre.ranked_curve(np.argsort(~q.solved, kind="stable"), q.solved)
        assert phyre.auccess(oracle[None]) == 100.0
        assert phyre.auccess(phyre.chance_curve(q.solved)[None]) < 100.0


def test_hidden_readout_learns_a_bounded_region_that_logistic_regression_cannot():
    # a placement solves a scene only inside a region around the green ball: not a half-space
    rng = np.random.default_rng(0)
    x, held_out = rng.uniform(-3, 3, size=(2, 1500, 2))
    inside = lambda v: np.linalg.norm(v - [0.5, 1.0], axis=-1) < 1.5  # noqa: E731
    hidden = Readout(x, inside(x), phyre.READOUT_DECAY, hidden=16)
    linear = Readout(x, inside(x), phyre.READOUT_DECAY)
    majority = max(inside(held_out).mean(), 1 - inside(held_out).mean())  # ~80%
    assert (hidden(held_out) == inside(held_out)).mean() > 0.95
    assert (linear(held_out) == inside(held_out)).mean() < majority + 0.02
    again = Readout(x, inside(x), phyre.READOUT_DECAY, hidden=16)  # seeded: the same ranking twice
    assert np.array_equal(again.logits(held_out), hidden.logits(held_out))
    with pytest.raises(ValueError, match="finite"):
        Readout(np.where(x > 2.9, np.nan, x), inside(x), 1e-4, hidden=16)


def test_imagined_outcome_reads_what_the_episode_did():
    steps = 5
    states = np.zeros((3, steps, 36))
    cells = states.reshape(3, steps, 6, 6)
    cells[:, :, RED, :2] = [0.0, 9.0]
    cells[:, :, GREEN, :2] = [2.0, 0.5]
    cells[:, :, BLUE, :2] = [6.0, 0.5]
    # candidate 1: green rolls 3 units right into blue, which is pushed 0.2 on
    cells[1, :, GREEN, 0] = np.linspace(2.0, 5.0, steps)
    cells[1, -1, BLUE, 0] = 6.2
    states[2, 2:] = np.nan  # candidate 2: the rollout diverged
    out = phyre.imagined_outcome(states)
    assert out.shape == (3, 8) and np.isfinite(out).all()
    assert out[0, 0] == pytest.approx(4.0 - GREEN_RADIUS - BLUE_RADIUS)
    assert out[1, 0] == pytest.approx(6.2 - 5.0 - GREEN_RADIUS - BLUE_RADIUS)  # closest at the end
    assert out[0, 1] == pytest.approx(np.hypot(2.0, 8.5) - RED_RADIUS - GREEN_RADIUS)
    assert out[0, 2:4].tolist() == [0.0, 0.0] and out[1, 2:4].tolist() == pytest.approx([3.0, 0.0])
    assert out[1, 4] == pytest.approx(3.0) and out[1, 5:7].tolist() == pytest.approx([5.0 - 6.2, 0.0])
    assert out[0, 7] == 0.0 and out[1, 7] == pytest.approx(0.2)
    assert out[2, 0] == phyre.FAR and out[2, 4] == phyre.FAR  # a diverged rollout reads as far apart and far gone
    features = phyre.readout_features(np.zeros((3, 3)), states)
    assert features.shape == (3, 11)


@pytest.fixture(scope="module")
def tiny_model(train_tiny):
    return train_tiny(phyre.MiniPhyreTask(), TrainBudget(episodes=8, steps=20, window=6, probe_steps=30, extra={"latent_dim": 16, "rollout_steps": 4}))


def test_run_returns_a_well_formed_result(tiny_model, monkeypatch):
    monkeypatch.setattr(phyre, "CANDIDATES", 20)
    monkeypatch.setattr(phyre, "QUESTIONS", {True: 1, False: 1})
    monkeypatch.setattr(phyre, "READOUT_SCENES", {True: 2, False: 2})
    model, cfg = tiny_model
    result = phyre.MiniPhyreTask().run(model, cfg)
    kinds = {r.kind for r in result.rows}
    assert kinds == {"model", "baseline", "oracle"} and result.model_value() is not None
    assert all(r.value == 100.0 for r in result.rows if r.kind == "oracle")
    assert all(0.0 <= r.value <= 100.0 for r in result.rows)
    assert result.details["within"]["questions"] == 4 and result.details["cross"]["questions"] == 2
    assert result.rows[0].method.endswith("(readout of the imagined episode), within-template")
    assert {"model", "model_gap", "prior"} <= set(result.details["within"]["auccess"])
    json.dumps(result.details)
    assert len(result.sections) == 2 and "<img" in result.sections[1]
    assert result.target and result.reference


def test_run_refuses_models_that_cannot_answer(tiny_model, copy_model):
    model, cfg = tiny_model
    with pytest.raises(ValueError, match="MiniPhyre"):
        phyre.MiniPhyreTask().run(copy_model(model, world="physworld/Balls-v0"), cfg)
    with pytest.raises(ValueError, match="action_dim"):
        phyre.MiniPhyreTask().run(copy_model(model, action_dim=2), cfg)
    with pytest.raises(ValueError, match="probe"):
        phyre.MiniPhyreTask().run(copy_model(model, unfitted_probe=True), cfg)
