"""The latent-action family: contract, training through the shared loop, lookup, metrics."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from physworld.data import CollectConfig, EpisodeStore, Windows, collect
from physworld.eval.latent_action import (
    action_probe,
    codebook_stats,
    delta_psnr,
    evaluate_latent_action,
    fit_action_lookup,
    next_frame_quality,
    ssim,
)
from physworld.models import MODELS, load_model
from physworld.models.latent_action import (
    LatentAction,
    LatentActionConfig,
    action_classes,
    class_names,
    perplexity,
    psnr,
    shift_kernels,
)
from physworld.train import TrainConfig, fit
from physworld.train.loop import data_fields
from physworld.worlds.platformer import ACTION_NAMES

TINY = dict(codes=4, code_dim=4, width=8, blocks=1, kernels=2, kernel_size=5)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> EpisodeStore:
    """A small Platformer data set at 32x32, collected with the explorer."""
    path = collect(
        CollectConfig(
            world="physworld/Platformer-v0",
            episodes=4,
            out=tmp_path_factory.mktemp("d") / "pf",
            policy="expert",
            max_steps=16,
            num_envs=1,
            vector="sync",
            world_kwargs='{"image_size": 32}',
        )
    )
    return EpisodeStore.open(path)


def tiny(store: EpisodeStore, **kwargs) -> LatentAction:
    torch.manual_seed(0)
    cfg = LatentActionConfig(**{**TINY, **kwargs}, **data_fields(store.meta))
    return LatentAction(cfg)


def test_registered_and_config_checks():
    assert MODELS["latent-action"] is LatentAction
    with pytest.raises(ValueError, match="pixels"):
        LatentActionConfig(obs_kind="state", obs_shape=(6,))
    with pytest.raises(ValueError, match="codes"):
        LatentActionConfig(codes=1)
    with pytest.raises(ValueError, match="multiple of 16"):
        LatentActionConfig(obs_shape=(3, 40, 40))


def test_latent_state_is_the_frame_history(store):
    model = tiny(store).eval()
    frames = torch.from_numpy(store.episodes[0].obs[:3]).permute(0, 3, 1, 2)  # [3, C, H, W]
    z = model.encode(frames)
    assert z.shape == (3, 2 * 3 * 32 * 32) and z.dtype == torch.float32
    assert torch.equal(model.decode(z), frames)  # a history at rest decodes to its frame
    zh = model.encode_history(frames[None])
    assert torch.equal(model.decode(zh)[0], frames[-1])
    assert torch.equal(model.frames(zh)[0, 0], frames[1].float() / 255)
    with pytest.raises(ValueError, match="do not match"):
        model.encode(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))


def test_rollouts_are_markov_and_shaped(store):
    model = tiny(store).eval()
    z = model.encode(torch.from_numpy(store.episodes[0].obs[:2]).permute(0, 3, 1, 2))
    codes = torch.tensor([[1, 3, 0], [2, 2, 2]])
    with torch.no_grad():
        out = model.predict_latent(z, codes)
        step = model.predict_latent(model.predict_latent(z, codes[:, :2])[:, -1], codes[:, 2:])
        soft = model.predict_latent(z, torch.nn.functional.one_hot(codes, 4).float())
    assert out.shape == (2, 3, z.shape[1])
    torch.testing.assert_close(out[:, -1], step[:, 0])
    torch.testing.assert_close(out, soft)
    with pytest.raises(ValueError, match="latent action indices"):
        model.predict_latent(z, torch.tensor([[4], [0]]))


def test_loss_never_reads_the_true_actions(store):
    model = tiny(store)
    batch = Windows(store, 3).gather(np.arange(4))
    del batch["actions"], batch["states"]
    out = model.loss(batch)
    diagnostics = {"recon", "commit", "code_distance", "psnr", "codes_used", "perplexity"}
    assert {"loss", "perplexity_ema", *diagnostics} <= set(out)
    assert 0 <= float(out["code_distance"]) <= 4  # squared distance of two unit vectors
    assert torch.isfinite(out["loss"]) and 1 <= float(out["codes_used"]) <= 4
    out["loss"].backward()
    assert model.action_encoder.head[-1].weight.grad is not None  # the LAM learns from pixels


def test_shift_kernels_move_whole_images():
    image = torch.rand(2, 3, 12, 12)
    kernels = torch.zeros(2, 1, 2, 5)
    kernels[:, 0, 0, 2 - 1] = 1.0  # vertical: the pixel one row up -> moves the image down by 1
    kernels[:, 0, 1, 2 + 2] = 1.0  # horizontal: the pixel two columns right -> moves it left by 2
    moved = shift_kernels(image, kernels)[:, 0]
    torch.testing.assert_close(moved[:, :, 1:, :-2], image[:, :, :-1, 2:])
    identity = torch.zeros(2, 1, 2, 5)
    identity[..., 2] = 1.0
    torch.testing.assert_close(shift_kernels(image, identity)[:, 0], image)


def test_perplexity_and_psnr_helpers():
    assert float(perplexity(torch.tensor([5.0, 0, 0, 0]))) == pytest.approx(1.0)
    assert float(perplexity(torch.ones(8))) == pytest.approx(8.0)
    x = torch.rand(2, 3, 16, 16)
    assert torch.isfinite(psnr(x, x)).all() and (psnr(x, x) > 90).all()
    assert torch.allclose(ssim(x, x), torch.ones(2))
    assert (ssim(x, torch.rand(2, 3, 16, 16)) < 0.5).all()


def test_action_classes():
    scores = torch.tensor([[0.1, 0.9, 0.0, 0.2], [0.0, 0.0, 0.0, 1.0]])
    assert action_classes(scores, [0] * 4, [1] * 4, choice=True).tolist() == [1, 3]
    xy = torch.tensor([[-1.0, 0.0], [1.0, 1.0], [0.2, -0.9]])
    assert action_classes(xy, [-1, -1], [1, 1], choice=False).tolist() == [
        0 + 3 * 1,
        2 + 3 * 2,
        1 + 0,
    ]
    assert class_names(2, None)[5] == "+0" and class_names(4, ("a", "b")) == ["a", "b"]


def test_trains_in_the_shared_loop_and_round_trips(store, tmp_path):
    model = tiny(store)
    cfg = TrainConfig(
        model="latent-action",
        steps=4,
        batch_size=4,
        window=3,
        warmup=1,
        out=str(tmp_path / "run"),
        probe_steps=5,
        probe_frames=16,
        progress=False,
        log_every=2,
        threads=1,
    )
    path = fit(model, Windows(store, 3), cfg)
    log = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "perplexity" in log and "codes_used" in log and "probe_pos_err" in log
    z0 = model.encode(Windows(store, 3).gather([0])["obs"][:, 0])
    assert model.read_state(z0).shape == (1, 18)  # the state probe reads the newest frame
    windows = Windows(store, 4)
    with pytest.raises(RuntimeError, match="lookup"):
        model.predict(
            model.encode(windows.gather([0])["obs"][:, 0]), windows.gather([0])["actions"]
        )
    table = fit_action_lookup(model, windows, count=40)
    assert table["action_names"] == ["noop", "left", "right", "jump"]
    model.save(path)
    loaded = load_model(path)
    assert loaded.config.action_names == model.config.action_names
    assert torch.equal(loaded.action_to_code, model.action_to_code)
    batch = windows.gather(np.arange(3))
    z = loaded.encode(batch["obs"][:, 0])
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.predict(z, batch["actions"]), model.eval().predict(z, batch["actions"])
        )
        surprise = loaded.surprise(batch["obs"], batch["actions"])
    assert surprise.shape == (3, 4) and torch.isfinite(surprise).all()


def test_metrics_run_and_are_consistent(store):
    model = tiny(store)
    windows = Windows(store, 5)
    probe = action_probe(model, windows, windows, fit_transitions=40, test_transitions=80)
    assert 0.0 <= probe["probe_lookup_acc"] <= 1.0 and 0.0 <= probe["probe_linear_acc"] <= 1.0
    assert probe["probe_fit_transitions"] == 40 and probe["probe_test_transitions"] == 80
    recall = [v for k, v in probe.items() if k.startswith("probe_lookup_recall_")]
    assert recall and {k.rsplit("_", 1)[1] for k in probe if "recall" in k} <= set(ACTION_NAMES)
    assert min(recall) - 1e-6 <= probe["probe_lookup_acc"] <= max(recall) + 1e-6  # a weighted mean
    stats = codebook_stats(model, windows, count=50)
    assert 1 <= stats["codes_used"] <= 4 and 1.0 <= stats["code_perplexity"] <= 4.0 + 1e-5
    delta = delta_psnr(model, windows, t=4, count=8)
    assert delta["delta_psnr"] == pytest.approx(delta["psnr_inferred"] - delta["psnr_random"])
    quality = next_frame_quality(model, windows, count=8)
    assert {"next_psnr_inferred", "next_ssim_world", "copy_psnr"} <= set(quality)
    with pytest.raises(ValueError, match="windows of"):
        delta_psnr(model, Windows(store, 3), t=4)
    everything = evaluate_latent_action(
        replace_model(model), windows, windows, fit_transitions=40, long_t=8
    )
    assert np.isfinite(list(everything.values())).all() and everything["delta_psnr_t_long"] == 8


def replace_model(model: LatentAction) -> LatentAction:
    """A fresh copy (the metrics install a lookup into the model they are given)."""
    clone = LatentAction(replace(model.config))
    clone.load_state_dict(model.state_dict())
    return clone


def test_physworld_eval_reports_genie_metrics_for_this_family(store, tmp_path):
    from physworld.eval import EvalConfig, evaluate

    model = tiny(store)
    path = model.save(tmp_path / "model")
    report = evaluate(EvalConfig(model=path, episodes=4, threads=1, out=tmp_path / "eval"))
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    metrics = results["latent_action"]
    assert metrics["delta_psnr"] == pytest.approx(metrics["psnr_inferred"] - metrics["psnr_random"])
    assert 0.0 <= metrics["probe_lookup_acc"] <= 1.0 and 1 <= metrics["codes_used"] <= 4
    assert "ΔtPSNR" in report.read_text()
    with pytest.raises(ValueError, match="trained on 'physworld/Platformer-v0'"):
        evaluate(EvalConfig(model=path, world="physworld/Balls-v0", out=tmp_path / "other"))
