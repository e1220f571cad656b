"""Evaluation: metrics on constructed cases, the model path, results.json, report.html, errors."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import physworld  # noqa: F401  (registers the worlds)
from physworld.data import CollectConfig, EpisodeStore, Windows, collect
from physworld.eval import EvalConfig, evaluate, run_eval
from physworld.eval.speed import steps_per_second
from physworld.eval.trajectory import (
    Scenes,
    accuracy_by_motion,
    constant_velocity,
    constant_velocity_from_frames,
    copy_last_state,
    engine_oracle,
    engine_rollout,
    in_free_flight,
    model_one_step,
    model_rollout,
    score_all,
    trajectory_metrics,
)
from physworld.models import JEPA, JEPAConfig, ModelConfig, WorldModel
from physworld.models.probe import fit_probe

BALLS = "physworld/Balls-v0"
STEP = 4 / 60  # Balls' default env step: frame_skip 4 x dt 1/60


def line_scenes(horizon: int = 5, velocity: tuple[float, float] = (2.0, 0.0)) -> Scenes:
    """One ball moving in a straight line (ballistic), one empty slot."""
    t = np.arange(horizon + 1, dtype=np.float32)[:, None] * STEP
    ball = np.zeros((horizon + 1, 6), np.float32)
    ball[:, 0:2] = np.array([1.0, 1.0]) + t * np.array(velocity)
    ball[:, 2:4] = velocity
    states = np.concatenate([ball, np.zeros_like(ball)], axis=1)[None]  # [1, H+1, 12]
    return Scenes(
        world=BALLS, world_kwargs={"obs": "state", "n_balls": (1, 2)}, seeds=[0], obs=states,
        actions=np.zeros((1, horizon, 1), np.float32), states=states,
        active=np.array([[True, False]]), arena_size=10.0, step_seconds=STEP,
    )


def test_accuracy_thresholds_at_epsilon_and_ignores_empty_slots():
    scenes = line_scenes()
    pred = scenes.states[:, 1:].copy()
    pred[..., 0] += 0.49  # ball 0 just inside epsilon
    pred[..., 6] += 100.0  # the empty slot is far off, and must not count
    inside = trajectory_metrics(pred, scenes, epsilon=0.5)
    assert inside["accuracy_at_step"] == [1.0] * 5
    np.testing.assert_allclose(inside["position_rmse"], 0.49, rtol=1e-5)
    pred[..., 0] += 0.02  # now 0.51 away
    assert trajectory_metrics(pred, scenes, epsilon=0.5)["accuracy_at_step"] == [0.0] * 5
    pred[0, 2, 0] = np.nan  # non-finite: a miss, and the errors stay finite
    nan = trajectory_metrics(pred, scenes, epsilon=0.5)
    assert all(math.isfinite(v) for v in nan["position_rmse"])


def test_copy_last_is_worse_than_constant_velocity_on_ballistic_motion():
    scenes = line_scenes(horizon=8)
    cv = trajectory_metrics(constant_velocity(scenes), scenes, epsilon=0.5)
    copy = trajectory_metrics(copy_last_state(scenes), scenes, epsilon=0.5)
    assert cv["accuracy_at_step"] == [1.0] * 8 and max(cv["position_rmse"]) < 1e-5
    assert copy["accuracy_at_step"][-1] == 0.0  # 8 steps x 2/15 units > 0.5
    assert all(c >= k for c, k in zip(cv["accuracy_within_horizon"], copy["accuracy_within_horizon"], strict=True))


def test_accuracy_by_motion_splits_free_flight_from_turned_objects():
    scenes = line_scenes(horizon=6)
    states = np.concatenate([scenes.states[..., :6]] * 2, -1)  # ball 1 the same as ball 0 ...
    t = np.arange(1, 5, dtype=np.float32) * STEP
    states[0, 3:, 6] = states[0, 2, 6] - 2.0 * t  # ... until it bounces back after step 2
    states[0, 3:, 8] = -2.0
    scenes = replace(scenes, obs=states, states=states, active=np.array([[True, True]]))
    free = in_free_flight(scenes, tolerance=0.1)
    assert free[0, :, 0].all() and free[0, :2, 1].all() and not free[0, 2:, 1].any()
    # straight lines are exact in free flight and off after the bounce (2 x 4 steps x 2/15 > 0.5)
    assert accuracy_by_motion(constant_velocity(scenes), scenes, 0.5, step=6) == {"free": 1.0, "turned": 0.0, "free_share": 0.5}
    assert accuracy_by_motion(scenes.states[:, 1:], scenes, 0.5, step=6) == {"free": 1.0, "turned": 1.0, "free_share": 0.5}
    assert accuracy_by_motion(constant_velocity(scenes), scenes, 0.5, step=2)["free_share"] == 1.0


def test_constant_velocity_from_frames_reads_positions_and_velocities_off_the_pixels_alone():
    seeds = list(range(10_000_000, 10_000_004))
    scenes = engine_rollout(BALLS, {"obs": "pixels"}, seeds, horizon=3, context=2)
    pred = constant_velocity_from_frames(scenes)
    assert pred.shape == scenes.states[:, 1:].shape
    # the centroids land on the balls (well under a radius), and the velocity is the motion's
    objects = lambda s: s.reshape(*s.shape[:-1], scenes.n_objects, 6)  # noqa: E731
    read = objects(pred[:, 0])[..., :2] - objects(pred[:, 0])[..., 2:4] * STEP  # back to t=0
    error = np.linalg.norm(read - objects(scenes.states[:, 0])[..., :2], axis=-1)[scenes.active]
    assert error.max() < 0.05  # world units (the arena is 10)
    exact = objects(constant_velocity(scenes)[:, 0])[..., 2:4]
    assert np.linalg.norm(objects(pred[:, 0])[..., 2:4] - exact, axis=-1)[scenes.active].mean() < 0.25  # units/s; balls move at ~1-4
    # it reads the frames only: the engine's states play no part
    blind = replace(scenes, states=np.full_like(scenes.states, np.nan))
    np.testing.assert_array_equal(constant_velocity_from_frames(blind), pred)
    with pytest.raises(ValueError, match="pixel scenes with a context frame"):
        constant_velocity_from_frames(engine_rollout(BALLS, {"obs": "state"}, seeds[:1], horizon=2, context=2))


def test_engine_oracle_scores_exactly_100_percent():
    scenes = engine_rollout(BALLS, {"obs": "state"}, [10_000_000, 10_000_001], horizon=12)
    m = trajectory_metrics(engine_oracle(scenes), scenes, epsilon=1e-9)
    assert m["accuracy_at_step"] == [1.0] * 12 and m["position_rmse"] == [0.0] * 12
    assert np.array_equal(scenes.states[:, 0], scenes.obs[:, 0])  # state mode: obs is the state


class Ballistic(WorldModel):
    """A hand-built model: the latent is the state, predict draws straight lines, and the probe
    is the identity, so its scores must equal the constant-velocity baseline's."""

    def __init__(self, config: ModelConfig | dict):
        super().__init__(config)
        probe = self.attach_probe(self.config.state_dim)  # probe_hidden=0: one linear layer
        with torch.no_grad():
            probe.net[0].weight.copy_(torch.eye(self.config.state_dim))
            probe.net[0].bias.zero_()
            probe.fitted.fill_(True)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.float()

    def predict(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        s = z.unflatten(-1, (-1, 6))[:, None]  # [B, 1, k, 6]
        t = torch.arange(1, actions.shape[1] + 1, dtype=z.dtype)[None, :, None, None] * STEP
        return torch.cat([s[..., :2] + s[..., 2:4] * t, s[..., 2:].expand(-1, t.shape[1], -1, -1)], -1).flatten(2)


def ballistic(world: str = BALLS, obs_kind: str = "state") -> Ballistic:
    return Ballistic(ModelConfig(
        family="ballistic", obs_kind=obs_kind, obs_shape=(18,), action_dim=1, state_dim=18,
        world=world, world_kwargs={"obs": "state"}, arena_size=10.0, probe_hidden=0,
    ))


def test_a_model_is_scored_through_encode_predict_read_state():
    scenes = engine_rollout(BALLS, {"obs": "state"}, list(range(10_000_000, 10_000_006)), horizon=10)
    scores, rollout = score_all(ballistic(), scenes, epsilon=0.5, batch_size=4)
    np.testing.assert_allclose(rollout.states, constant_velocity(scenes), atol=1e-4)
    assert scores["model"]["accuracy_at_step"] == scores["constant_velocity"]["accuracy_at_step"]
    assert scores["model_probe_on_truth"]["accuracy_at_step"] == [1.0] * 10  # identity probe
    # one step ahead of every true state: straight lines from each, so exact while nothing turns
    one = model_one_step(ballistic(), scenes, batch_size=7)
    objects = lambda s: s.reshape(*s.shape[:-1], scenes.n_objects, 6)  # noqa: E731
    before = objects(scenes.states[:, :-1])
    np.testing.assert_allclose(objects(one)[..., :2], before[..., :2] + before[..., 2:4] * STEP, atol=1e-4)


def test_steps_per_second_is_positive():
    assert steps_per_second(lambda: sum(range(100)), 100, warmup=1, repeats=2, min_seconds=0.01) > 0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny state-mode JEPA with a fitted probe, saved like `physworld train` does."""
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("eval")
    data = collect(CollectConfig(world=BALLS, episodes=4, out=tmp / "data", obs="state", max_steps=12, num_envs=1, vector="sync"))
    store = EpisodeStore.open(data)
    meta = store.meta
    model = JEPA(JEPAConfig(
        obs_kind="state", obs_shape=(meta["state_dim"],), action_dim=meta["action_dim"], state_dim=meta["state_dim"],
        world=meta["world"], world_kwargs=meta["world_kwargs"], arena_size=meta["arena_size"],
        latent_dim=16, encoder_width=4, predictor="mlp", predictor_width=16, probe_hidden=16,
    ))
    fit_probe(model, Windows(store, 1), steps=20, frames=64, batch_size=16)
    run = tmp / "run"
    model.save(run / "model")
    (run / "train_state").mkdir()
    (run / "train_state" / "state.json").write_text(json.dumps({"train_config": {"data": str(data)}}))
    return run


def small(run: Path, **overrides) -> EvalConfig:
    values = dict(
        model=run, world=BALLS, episodes=4, horizon=3, speed_batches=(1, 4), speed_repeats=1,
        speed_warmup=0, speed_min_seconds=0.02, animations=1, threads=1, out=run.parent / "report",
    )
    return EvalConfig(**{**values, **overrides})


def numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from numbers(v)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield value


def test_evaluate_writes_results_json_and_a_self_contained_report(tiny_run: Path):
    report = evaluate(small(tiny_run))
    results = json.loads((report.parent / "results.json").read_text())
    assert results["settings"]["threads"] == 1 and results["settings"]["training_seeds"] == [0, 4]
    assert {"python", "torch", "numpy", "pymunk", "physworld"} <= set(results["versions"])
    assert results["steps"] == [1, 2, 3]
    for split in ("in_distribution", "out_of_distribution"):
        predictors = results[split]["predictors"]
        assert set(predictors) == {"engine_oracle", "copy_last_state", "constant_velocity", "model", "model_probe_on_truth"}
        assert predictors["engine_oracle"]["accuracy_at_step"] == [1.0, 1.0, 1.0]
        for m in predictors.values():
            assert all(len(m[k]) == 3 for k in ("accuracy_at_step", "position_rmse", "velocity_rmse"))
    assert results["out_of_distribution"]["applicable"] and not results["out_of_distribution"]["more_objects"]["applicable"]
    for mode in ("state", "pixels"):
        rows = results["speed"][mode]["rows"]
        assert {r["batch"] for r in rows} == {1, 4}
        assert all(r["engine_steps_per_s"] > 0 and r["model_steps_per_s"] > 0 for r in rows)
    assert "speedup_state_batch_4" in results["headline"] and "10" not in results["headline"]["model_accuracy_at_step"]
    assert all(math.isfinite(v) for v in numbers(results))

    page = report.read_text()
    assert "http://" not in page and "https://" not in page and "<link" not in page and "<script" not in page
    assert page.count('src="data:image/gif;base64,') == 2  # one ID and one OOD animation
    assert 'src="data:image/png;base64,' in page  # the error-vs-horizon plot


def test_run_eval_gives_the_demo_sections_and_results(tiny_run: Path):
    results, sections = run_eval(small(tiny_run, speed=False, ood=False, animations=0), model=ballistic())
    assert "speed" not in results and not results["out_of_distribution"]["applicable"]
    assert results["headline"]["model_accuracy_at_step"]["3"] == results["in_distribution"]["predictors"]["constant_velocity"]["accuracy_at_step"][2]
    assert sections and all(s.startswith("<section>") for s in sections)


@pytest.mark.parametrize(
    ("overrides", "model", "message"),
    [
        ({"horizon": 0}, None, "horizon must be at least 1"),
        ({"episodes": 0}, None, "episodes must be at least 1"),
        ({"world": "physworld/Push-v0"}, None, "trained on 'physworld/Balls-v0', not on 'physworld/Push-v0'"),
        ({"obs": "pixels"}, None, "trained on 'state' observations, not 'pixels'"),
        ({"seed": 2}, None, "overlap the training data"),
        ({}, "unfitted", "no fitted state probe"),
    ],
)
def test_bad_input_gets_a_clear_error(tiny_run: Path, overrides: dict, model, message: str):
    if model == "unfitted":
        fitted = ballistic()
        model = JEPA(replace(JEPAConfig(), **{k: getattr(fitted.config, k) for k in ("obs_kind", "obs_shape", "action_dim", "state_dim", "world", "arena_size")}))
    with pytest.raises(ValueError, match=message):
        run_eval(small(tiny_run, speed=False, **overrides), model=model)


def test_a_pixel_model_with_a_decoder_is_timed_with_decode_and_animated(tiny_run: Path):
    torch.manual_seed(0)
    model = JEPA(JEPAConfig(
        obs_kind="pixels", obs_shape=(3, 16, 16), action_dim=1, state_dim=18, world=BALLS,
        world_kwargs={"obs": "pixels", "image_size": 16}, arena_size=10.0, latent_dim=8,
        encoder_width=4, predictor="mlp", predictor_width=8, probe_hidden=0, decoder=True,
    ))
    model.probe.fitted.fill_(True)  # an untrained probe: the numbers are meaningless, the path is not
    cfg = small(tiny_run, obs="pixels", horizon=2, episodes=2, speed_batches=(2,), ood=False)
    results, sections = run_eval(cfg, model=model)
    assert results["model"]["has_decoder"]
    assert [r["model"] for r in results["speed"]["pixels"]["rows"]] == ["predict + decode"]
    assert "model decoded frames" in sections[-1]


class FiniteDifference(Ballistic):
    """Ballistic, but a single observation shows no velocity (``encode`` zeroes it): the state
    needs two frames, and ``encode_context`` differences them."""

    context_frames = 2

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        s = obs.float().unflatten(-1, (-1, 6)).clone()
        s[..., 2:] = 0
        return s.flatten(-2)

    def encode_context(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        z = self.encode(obs[:, -1]).unflatten(-1, (-1, 6))
        if obs.shape[1] > 1:
            z[..., 2:4] = (obs[:, -1] - obs[:, -2]).float().unflatten(-1, (-1, 6))[..., :2] / STEP
        return z.flatten(-2)


class Jittery(Ballistic):
    """Straight lines plus noise: a model that samples its predictions."""

    def predict(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        lines = super().predict(z, actions)
        return lines + 0.3 * torch.randn_like(lines)


def test_a_sampling_model_scores_the_same_on_every_run():
    scenes = engine_rollout(BALLS, {"obs": "state"}, list(range(10_000_000, 10_000_004)), horizon=5)
    model = Jittery(ballistic().config)
    torch.manual_seed(7)
    untouched = torch.rand(3)
    torch.manual_seed(7)
    first = model_rollout(model, scenes, batch_size=2).states
    torch.testing.assert_close(torch.rand(3), untouched)  # the rollout drew from its own seed
    torch.manual_seed(8)
    np.testing.assert_array_equal(model_rollout(model, scenes, batch_size=2).states, first)
    other = model_rollout(model, scenes, batch_size=2, seed=1).states
    assert not np.allclose(other, first) and np.abs(first - constant_velocity(scenes)).max() > 0.1


def test_scenes_keep_their_context_and_a_model_reads_its_state_from_it():
    seeds = list(range(10_000_000, 10_000_006))
    plain = engine_rollout(BALLS, {"obs": "state"}, seeds, horizon=12)
    late = engine_rollout(BALLS, {"obs": "state"}, seeds, horizon=10, context=3)
    # the same episodes, scored from two steps later, with what came before kept as context
    np.testing.assert_array_equal(late.states, plain.states[:, 2:])
    np.testing.assert_array_equal(late.context_obs, plain.obs[:, :2])
    np.testing.assert_array_equal(late.context_actions, plain.actions[:, :2])
    assert late.horizon == 10 and plain.context_obs is None
    with pytest.raises(ValueError, match="context must be at least 1"):
        engine_rollout(BALLS, {"obs": "state"}, seeds, horizon=3, context=0)

    model = FiniteDifference(ballistic().config)
    _, rollout = score_all(model, late, epsilon=0.5, batch_size=4)
    z0 = model.encode_context(torch.from_numpy(np.concatenate([late.context_obs[:, 1:], late.obs[:, :1]], 1)), None)
    np.testing.assert_allclose(rollout.states, model.predict(z0, torch.from_numpy(late.actions)).numpy(), atol=1e-5)
    _, from_one_frame = score_all(model, plain, epsilon=0.5, batch_size=4)  # no context: at rest
    np.testing.assert_allclose(from_one_frame.states[..., 0::6], copy_last_state(plain)[..., 0::6], atol=1e-5)
    # the probe's own share reads every true step the same way: positions, and differenced velocities
    np.testing.assert_allclose(rollout.probe_on_truth[..., :2], late.states[:, 1:, :2], atol=1e-5)
    assert np.abs(rollout.probe_on_truth[..., 2:4]).max() > 0
