"""physbench object permanence: the Occluder world, the matched pairs, the metrics, the task."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import physworld  # noqa: F401  (registers the worlds)
from physworld.eval.bench import permanence
from physworld.eval.bench.base import TrainBudget
from physworld.worlds.occluder import Occluder

WORLD = "physworld/Occluder-v0"


@pytest.mark.parametrize("obs", ["pixels", "state"])
def test_world_passes_check_env(obs: str):
    env = gym.make(WORLD, obs=obs, render_mode="rgb_array").unwrapped
    with warnings.catch_warnings():  # the no-op action space Box(0, 0) is intended
        warnings.simplefilter("ignore")
        check_env(env)
    assert isinstance(env, Occluder)


def test_world_is_deterministic_and_the_screen_hides_the_ball():
    def roll(seed: int, **options) -> tuple[np.ndarray, np.ndarray]:
        env = gym.make(WORLD, image_size=32)
        obs, info = env.reset(seed=seed, options=options)
        frames, states = [obs], [info["state"]]
        for _ in range(30):
            obs, *_, info = env.step(np.zeros(1, np.float32))
            frames.append(obs), states.append(info["state"])
        return np.stack(frames), np.stack(states)

    a, b = roll(5), roll(5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(roll(6)[1], a[1])
    env = gym.make(WORLD, image_size=32).unwrapped
    env.reset(seed=5)
    x = env.screen_x
    behind, clear = np.array([x, 3.0, 4.0, 0, 0, 0], np.float32), np.full(6, np.nan, np.float32)
    assert env.hidden(x) and np.array_equal(env.render_state(behind), env.render_state(clear))
    # a ghost wall changes the physics of the same scene, never its picture at the start
    seed = next(s for s in range(50) if np.isfinite(gym.make(WORLD).unwrapped.reset(seed=s)[1]["params"]["wall_x"]))
    solid, ghost = roll(seed), roll(seed, ghost_wall=True)
    assert np.array_equal(solid[0][0], ghost[0][0]) and not np.array_equal(solid[1], ghost[1])


@pytest.mark.parametrize("kwargs", [{"radius": 5.0}, {"height_range": (1.0, 5.5)}, {"wall_x_range": (2.0, 3.0)}])
def test_world_rejects_bad_arguments(kwargs: dict):
    with pytest.raises(ValueError):
        Occluder(**kwargs)


def test_metrics_on_hand_made_cases():
    assert permanence.pairwise_accuracy(np.array([2.0, 1.0, 3.0]), np.array([1.0, 2.0, 3.0])) == 0.5
    pairs = [permanence.Pair(0, p, c, 3, None, None, None) for p in permanence.PRINCIPLES
             for c in permanence.CONDITIONS]
    imp, pos = np.arange(8.0) + 1, np.arange(8.0)
    s = permanence.score(imp, pos, pairs)
    assert s["all"]["pairwise"] == 100.0 and s["vanish/occluded"]["pairs"] == 1
    assert s["all"]["auroc"] == pytest.approx(100 * 39.5 / 64)  # 36 wins and 7 ties of 64 pairs
    expected = np.array([[0.0, 4.0], [1.0, 2.0], [3.0, 1.0]])  # peaks 4, 2, 3 (median 3)
    foreseen = np.array([[1.0, 1.0], [2.0, 4.0], [6.0, 0.0]])  # means 1, 3, 3 (median 3)
    both = permanence.combined(expected, foreseen)
    np.testing.assert_allclose(both, [4 / 3 + 1 / 3, 2 / 3 + 1, 1 + 1])
    np.testing.assert_allclose(permanence.combined(1e6 * expected, 1e-6 * foreseen), both)  # unit-free


@pytest.fixture(scope="module")
def questions() -> permanence.Questions:
    return permanence.Questions(permanence.PermanenceTask(), 2, seed=0)


def test_pairs_are_matched_and_the_engine_oracle_is_right(questions: permanence.Questions):
    pairs = questions.pairs
    assert len(pairs) == 2 * len(permanence.PRINCIPLES) * len(permanence.CONDITIONS)
    for p in pairs:
        assert np.array_equal(p.possible[: p.event], p.impossible[: p.event])  # same until the event
        assert not np.array_equal(p.possible, p.impossible)
        questions.env.reset(seed=p.seed)
        x = float(p.states[p.event, 0])
        assert questions.env.hidden(x) if p.condition == "occluded" else questions.env.in_view(x)
        if p.condition == "occluded" and p.principle in ("vanish", "shape"):  # unseen at the event
            assert np.array_equal(p.possible[p.event], p.impossible[p.event])
    err = [permanence.frame_error(c, p.possible).mean() for p in pairs for c in (p.impossible, p.possible)]
    assert permanence.pairwise_accuracy(np.array(err[::2]), np.array(err[1::2])) == 1.0


@pytest.fixture(scope="module")
def tiny_model(train_tiny):
    return train_tiny(permanence.PermanenceTask(), TrainBudget(episodes=4, steps=4, obs="pixels", window=4, probe_steps=0,
                           extra={"predictor": "transformer", "encoder_width": 4, "latent_dim": 8}))


def test_run_returns_a_well_formed_result(tiny_model):
    model, cfg = tiny_model
    result = permanence.PermanenceTask().run(model, cfg)
    assert {r.kind for r in result.rows} == {"model", "baseline", "oracle"}
    assert next(r.value for r in result.rows if r.kind == "oracle") == 100.0
    assert all(0.0 <= r.value <= 100.0 for r in result.rows)
    scores = result.details["scores"]["model"]
    assert {"vanish/occluded", "wall/visible", "occluded", "visible", "all"} <= set(scores)
    json.dumps(result.details)
    assert "image/gif" in result.sections[0] and result.reference and result.target


def test_run_refuses_models_that_cannot_answer(tiny_model, copy_model):
    model, cfg = tiny_model
    with pytest.raises(ValueError, match="Occluder"):
        permanence.PermanenceTask().run(copy_model(model, world="physworld/Balls-v0"), cfg)
    with pytest.raises(ValueError, match="pixel"):
        permanence.PermanenceTask().run(copy_model(model, obs_kind="state"), cfg)
