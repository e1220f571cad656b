"""physbench stability: the Tower world, the fallen() rule, the scores, the engine labels, the task."""

from __future__ import annotations

import json
import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import physworld  # noqa: F401  (registers the worlds)
from physworld.eval.bench import stability
from physworld.eval.bench.readout import Readout
from physworld.worlds.tower import MAX_BLOCKS, Tower, static_margin

WORLD = "physworld/Tower-v0"
FIELDS = 6


@pytest.mark.parametrize("obs", ["pixels", "state"])
def test_world_passes_check_env(obs: str):
    env = gym.make(WORLD, obs=obs, render_mode="rgb_array").unwrapped
    with warnings.catch_warnings():  # the no-op action space Box(0, 0) is intended
        warnings.simplefilter("ignore")
        check_env(env)
    assert isinstance(env, Tower) and env.n_objects == MAX_BLOCKS


def test_static_margin_on_hand_made_towers():
    assert static_margin([5.0], [2.0]) == math.inf
    assert static_margin([5.0, 5.0], [2.0, 2.0]) == pytest.approx(1.0)  # centred: a half-width to spare
    assert static_margin([5.0, 5.9], [2.0, 2.0]) == pytest.approx(0.1)
    assert static_margin([5.0, 6.5], [2.0, 2.0]) < 0  # top block's centre past the edge
    assert static_margin([5.0, 8.0], [2.0, 2.0]) < 0  # not touching at all


def tower(*blocks: tuple[float, float, float]) -> np.ndarray:
    """A state vector with blocks at ``(x, y, angle)`` in the first slots, the rest empty."""
    s = np.zeros((MAX_BLOCKS, FIELDS), np.float32)
    for i, (x, y, angle) in enumerate(blocks):
        s[i, [0, 1, 4]] = x, y, angle
    return s.reshape(-1)


def test_fallen_rule_on_hand_made_states():
    start = tower((5, 0.4, 0), (5, 1.2, 0))
    two = np.zeros((1, MAX_BLOCKS), bool)
    two[0, :2] = True

    def fallen(*steps: np.ndarray) -> list[bool]:
        return stability.fallen(np.stack(steps)[None], start[None], two)[0].tolist()

    still = start.copy()
    slid = tower((5, 0.4, 0), (5 + 1.5 * stability.MOVED, 1.2, 0))
    crept = tower((5, 0.4, 0), (5 + 0.5 * stability.MOVED, 1.2, 0))
    assert fallen(still, still, still) == [False, False, False]
    assert fallen(still, slid, still) == [False, True, True]  # once fallen, it stays fallen
    assert fallen(crept, crept) == [False, False]  # moved, but less than the threshold
    assert fallen(tower((5, 0.4, 0), (5, 1.2, 1.5 * stability.TURNED))) == [True]  # tipped in place
    # angles wrap: from just under pi to just over -pi is a small turn
    wrap_start = tower((5, 0.4, math.pi - 0.05), (5, 1.2, 0))
    wrapped = tower((5, 0.4, -math.pi + 0.05), (5, 1.2, 0))
    assert not stability.fallen(wrapped[None, None], wrap_start[None], two)[0, 0]
    ghost = still.copy()
    ghost[2 * FIELDS] = 9.0  # an empty slot "moves": not a block, not a fall
    assert fallen(ghost) == [False]
    broken = still.copy()
    broken[0] = np.nan  # a non-finite prediction is far from rest
    assert fallen(broken) == [True]


def test_scores_on_hand_made_answers():
    s = stability.scores(np.array([1, 1, 0, 0, 0]), np.array([1, 0, 0, 0, 1]))
    assert s["accuracy"] == pytest.approx(0.6)
    assert s["falls_recall"] == 0.5 and s["stands_recall"] == pytest.approx(2 / 3)
    assert s["balanced_accuracy"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert (s["true_falls"], s["true_stands"], s["false_falls"], s["false_stands"]) == (1, 2, 1, 1)
    never = stability.scores(np.zeros(4, bool), np.array([0, 0, 0, 1], bool))
    assert never["accuracy"] == 0.75 and never["balanced_accuracy"] == 0.5  # the majority is not skill
    one_class = stability.scores(np.array([0, 1], bool), np.zeros(2, bool))
    assert one_class["balanced_accuracy"] == 0.5 and math.isnan(one_class["falls_recall"])


@pytest.fixture(scope="module")
def questions() -> stability.Questions:
    seeds = list(range(7_000_000, 7_000_040))
    return stability.ask_engine({**stability.Stability.world_kwargs, "obs": "state"}, seeds, progress=False)


def test_engine_labels_are_a_mix_and_the_oracle_is_deterministic(questions: stability.Questions):
    truth = questions.falls()
    assert questions.horizon == 15 and questions.states.shape[1] == 16
    assert 0.25 <= truth.mean() <= 0.75  # both classes common, as the world draws them
    heights = np.array([p["n_blocks"] for p in questions.params])
    assert set(heights) <= set(range(2, 7)) and len(set(heights)) >= 3
    again = stability.ask_engine(questions.world_kwargs, questions.seeds[:5], progress=False)
    assert np.array_equal(again.falls(), truth[:5]) and np.array_equal(again.states, questions.states[:5])
    # the hand-written statics rule knows something (it balanced the draw), but is not the engine
    statics = stability.statics_answers(questions)
    assert stability.scores(statics, truth)["accuracy"] > 0.6
    velocity = stability.constant_velocity_answers(questions)
    assert velocity.shape == truth.shape and velocity.dtype == bool


@pytest.fixture(scope="module")
def tiny_model(tiny_tower):
    return tiny_tower


def test_run_returns_a_well_formed_result(tiny_model, few_towers):
    model, cfg = tiny_model
    result = stability.Stability().run(model, cfg)
    kinds = {r.method: r.kind for r in result.rows}
    assert set(kinds.values()) == {"model", "baseline", "oracle"} and result.model_value() is not None
    assert {"chance (coin flip)", "majority class", "copy last state (never falls)"} <= set(kinds)
    assert next(r.value for r in result.rows if r.kind == "oracle") == 100.0
    assert all(0.0 <= r.value <= 100.0 for r in result.rows) and result.metric == "accuracy (%)"
    d = result.details
    assert d["questions"] == 12 and 0 < d["falls_fraction"] < 1
    assert set(d["methods"]) >= {"model", "model_readout", "model_readout_start", "engine_oracle",
                                 "statics", "model_probe_on_truth"}
    assert result.rows[0].method.startswith("model (readout") and d["readout"]["towers"] == 40
    assert sum(v["count"] for v in d["model_by_blocks"].values()) == 12
    json.dumps(d)
    assert "image/gif" in result.sections[0] and result.reference and result.target


def test_readout_learns_a_rule_it_can_express_and_reads_diverged_rollouts_as_far():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5)) * [1.0, 100.0, 0.01, 1.0, 1.0]  # scales standardisation must undo
    falls = x[:, 1] / 100 + x[:, 2] / 0.01 > 0.3
    readout = Readout(x, falls, stability.READOUT_DECAY)
    held_out = rng.normal(size=(400, 5)) * [1.0, 100.0, 0.01, 1.0, 1.0]
    assert (readout(held_out) == (held_out[:, 1] / 100 + held_out[:, 2] / 0.01 > 0.3)).mean() > 0.95
    assert (Readout(x, np.zeros(400, bool), 1e-4)(held_out) == 0).all()  # one class: always it
    with pytest.raises(ValueError, match=r"features \[N, F\] and N outcomes, got \(400, 5\) and 3"):
        Readout(x, falls[:3], 1e-4)
    start, imagined = np.zeros((2, 3)), np.full((2, 4, 3), np.nan)
    imagined[0] = 1.0
    features = stability.readout_features(start, imagined)
    assert features.shape == (2, 15) and np.isfinite(features).all() and features[1].max() == 1e3


def test_run_refuses_models_that_cannot_answer(tiny_model, copy_model):
    model, cfg = tiny_model
    with pytest.raises(ValueError, match="Tower-v0.*Balls-v0"):
        stability.Stability().run(copy_model(model, world="physworld/Balls-v0"), cfg)
    with pytest.raises(ValueError, match="other settings"):
        stability.Stability().run(copy_model(model, world_kwargs={"n_blocks": [2, 3]}), cfg)
    with pytest.raises(ValueError, match="probe"):
        stability.Stability().run(copy_model(model, unfitted_probe=True), cfg)
