"""physbench causal discovery: the Springs world, the intervention protocol, the metrics, the task."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import physworld  # noqa: F401  (registers the worlds)
from physworld.eval.bench import causal
from physworld.eval.bench.base import TrainBudget
from physworld.worlds.springs import Springs, spring_graph

WORLD = "physworld/Springs-v0"


@pytest.mark.parametrize("obs", ["pixels", "state"])
def test_world_passes_check_env(obs: str):
    env = gym.make(WORLD, obs=obs, render_mode="rgb_array").unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env)
    assert isinstance(env, Springs) and env.action_space.shape == (10,)


def test_world_is_deterministic_and_graph_is_fixed_by_graph_seed():
    def roll(seed: int) -> np.ndarray:
        env = gym.make(WORLD, obs="state")
        states = [env.reset(seed=seed)[1]["state"]]
        for _ in range(20):
            states.append(env.step(env.unwrapped.expert_action())[4]["state"])
        return np.stack(states)

    assert np.array_equal(roll(3), roll(3)) and not np.array_equal(roll(3), roll(4))
    a = gym.make(WORLD, graph_seed=1).unwrapped
    assert a.springs == spring_graph(5, 5, 1) == gym.make(WORLD, graph_seed=1).unwrapped.springs
    assert a.springs != gym.make(WORLD, graph_seed=2).unwrapped.springs
    assert a.adjacency.sum() == 10 and (a.adjacency == a.adjacency.T).all()


@pytest.mark.parametrize(
    "kwargs", [{"n_particles": 1}, {"n_springs": 11}, {"graph_seed": -1}, {"stiffness": "stiff"}]
)
def test_world_rejects_bad_arguments(kwargs: dict):
    with pytest.raises(ValueError):
        Springs(**kwargs)


def test_metrics_on_hand_made_graphs():
    true = np.zeros((3, 3), bool)
    true[0, 1] = true[1, 0] = True
    pred = np.zeros((3, 3), bool)
    pred[0, 1] = pred[2, 0] = True  # one right, one wrong, one missed
    s = causal.edge_scores(pred, true)
    assert s == {"f1": 0.5, "shd": 2.0, "precision": 0.5, "recall": 0.5}
    assert causal.edge_scores(true, true)["f1"] == 1.0 and causal.edge_scores(true, true)["shd"] == 0
    assert causal.auroc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 1, 0, 0])) == 1.0
    assert causal.auroc(np.array([0.1, 0.5, 0.5, 0.9]), np.array([1, 1, 0, 0])) == pytest.approx(0.125)
    assert 0.2 < causal.split_scores(np.array([0.01, 0.02, 0.05, 0.5, 0.6, 0.9])) < 0.5
    assert causal.split_scores(np.zeros(6)) == np.inf  # nothing responds: no edge at all
    chance = causal.chance_scores(true, 4000, 0)
    assert chance["f1"] == pytest.approx(2 / 6, abs=0.05)  # a random graph of density 1/3


@pytest.mark.parametrize("graph_seed", [0, 1])
def test_engine_oracle_recovers_the_graph(graph_seed: int):
    """The task's graph (0) and one of the graphs the protocol was chosen on (1)."""
    task = causal.CausalTask()
    task.world_kwargs = {**task.world_kwargs, "graph_seed": graph_seed}
    q = causal.Questions(task, 10, seed=0)
    _, graph = causal.graph_from_responses(causal.responses(q.engine, q.n, 10))
    assert np.array_equal(graph, q.env.adjacency)
    _, empty = causal.graph_from_responses(causal.responses(q.constant_velocity, q.n, 10))
    assert not empty.any()
    score, corr = causal.correlation_graph(q.observational(3, 60))
    assert np.allclose(score, score.T) and not np.diag(corr).any()


@pytest.fixture(scope="module")
def tiny_model(train_tiny):
    return train_tiny(causal.CausalTask(), TrainBudget(episodes=6, steps=20, policy="expert", probe_steps=30, extra={"latent_dim": 16}))


def test_run_returns_a_well_formed_result(tiny_model):
    model, cfg = tiny_model
    result = causal.CausalTask().run(model, cfg)
    kinds = {r.kind for r in result.rows}
    assert kinds == {"model", "baseline", "oracle"} and result.model_value() is not None
    assert next(r.value for r in result.rows if r.kind == "oracle") == 100.0
    assert all(0.0 <= r.value <= 100.0 for r in result.rows)
    json.dumps(result.details)
    assert result.sections and "<img" in result.sections[0]
    assert result.target and result.reference


def test_run_refuses_models_that_cannot_answer(tiny_model, copy_model):
    model, cfg = tiny_model
    with pytest.raises(ValueError, match="Springs"):
        causal.CausalTask().run(copy_model(model, world="physworld/Balls-v0"), cfg)
    with pytest.raises(ValueError, match="probe"):
        causal.CausalTask().run(copy_model(model, unfitted_probe=True), cfg)


def test_pc_baseline_links_only_particles_whose_velocities_depend():
    pytest.importorskip("causallearn")  # the optional 'causal' extra (make setup installs it)
    rng = np.random.default_rng(0)
    velocities = rng.normal(size=(40, 50, 3, 2))  # [episodes, steps, particles, (vx, vy)]
    velocities[:, :, 1] = velocities[:, :, 0] + 0.3 * rng.normal(size=(40, 50, 2))  # 0 and 1 move together
    graph = causal.pc_graph(velocities)
    assert graph.shape == (3, 3) and not graph.diagonal().any()
    assert graph[0, 1] or graph[1, 0]  # two variables alone cannot be oriented: either way counts
    assert not graph[:, 2].any() and not graph[2, :].any()  # particle 2 is independent of both
