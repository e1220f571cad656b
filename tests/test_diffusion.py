"""Diffusion world model: EDM loss and preconditioning, the few-step sampler, the frame-history
contract, the probe on generated frames, checkpoints, and a short training run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_models import MovingDots

from physworld.models import blocks, load_model, model_class
from physworld.models.diffusion import (
    DiffusionConfig,
    DiffusionWorldModel,
    FrameProbe,
    SpatialFrameProbe,
)
from physworld.models.probe import fit_probe
from physworld.train import TrainConfig, fit

pytest.importorskip("diffusers")
torch.set_num_threads(1)


def small_diffusion(data: MovingDots, **kw) -> DiffusionWorldModel:
    defaults = dict(channels=(8, 16), probe_width=4, probe_hidden=32)
    return DiffusionWorldModel(DiffusionConfig(**{**defaults, **data.config, **kw}))


def test_registered_and_shapes_follow_the_contract():
    assert model_class("diffusion") is DiffusionWorldModel
    data = MovingDots(pixels=True, image=16)
    model = small_diffusion(data)
    batch = next(data.batches(3))
    z = model.encode(batch["obs"][:, 0])
    assert z.shape == (3, 2 * 3 * 16 * 16)
    frames = model.frames(z)
    torch.testing.assert_close(frames[:, 0], frames[:, 1])  # one frame: a history at rest
    assert torch.equal(model.decode(z), batch["obs"][:, 0])  # uint8 -> [-1, 1] -> uint8 is exact
    context = model.encode_context(batch["obs"])
    assert torch.equal(model.decode(context), batch["obs"][:, -1])
    assert torch.equal(model.frames(context)[:, 0], model.frames(model.encode(batch["obs"][:, -2]))[:, 0])
    pred = model.predict(z, batch["actions"])
    assert pred.shape == (3, 4, z.shape[1]) and pred.abs().max() <= 1
    assert model.surprise(batch["obs"], batch["actions"]).shape == (3, 4)
    with pytest.raises(ValueError, match="generates pixels"):
        small_diffusion(MovingDots())
    with pytest.raises(ValueError, match="multiple of 32"):
        small_diffusion(data, channels=(8,) * 5)


def test_edm_preconditioning_and_loss_weighting():
    data = MovingDots(pixels=True, image=16)
    model = small_diffusion(data)
    hist = model.frames(model.encode(next(data.batches(2))["obs"][:, 0]))
    x, a = torch.rand(2, 3, 16, 16) * 2 - 1, torch.zeros(2, 2)
    # the U-Net's output layer starts at zero, so D = c_skip * x_noisy: ~ the input at tiny sigma,
    # and sigma_data^2 / (sigma^2 + sigma_data^2) of it in general
    for sigma in (1e-3, 1.0):
        out = model.denoise(x, torch.full((2,), sigma), hist, a)
        torch.testing.assert_close(out, x * 0.25 / (sigma**2 + 0.25))
    batch = next(data.batches(4))
    torch.manual_seed(0)
    out = model.loss(batch)
    assert out["loss"].ndim == 0 and math.isfinite(out["loss"].detach().item()) and "denoise_mse" in out
    out["loss"].backward()
    assert model.unet.out.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("sampler", ["euler", "dpmsolver"])
def test_sampler_takes_the_configured_number_of_network_calls(sampler):
    data = MovingDots(pixels=True, image=16)
    model = small_diffusion(data, sampler=sampler, sampling_steps=4).eval()
    calls = []
    model.unet.register_forward_hook(lambda *_: calls.append(1))
    batch = next(data.batches(2))
    frame = model.sample_next(model.frames(model.encode(batch["obs"][:, 0])), batch["actions"][:, 0])
    assert frame.shape == (2, 3, 16, 16) and len(calls) == 4
    assert torch.isfinite(frame).all() and frame.abs().max() <= 1


def test_rollout_is_markov_in_the_frame_history():
    data = MovingDots(pixels=True, image=16)
    model = small_diffusion(data).eval()
    batch = next(data.batches(2))
    z, a = model.encode_context(batch["obs"][:, :2]), batch["actions"]
    torch.manual_seed(3)
    whole = model.predict(z, a)
    torch.manual_seed(3)
    first = model.predict(z, a[:, :1])
    rest = model.predict(first[:, -1], a[:, 1:])
    torch.testing.assert_close(torch.cat([first, rest], 1), whole)


def test_probe_reads_the_newest_frame_and_round_trips(tmp_path: Path):
    data = MovingDots(pixels=True, image=16)
    model = small_diffusion(data).eval()
    metrics = fit_probe(model, data, steps=150, frames=512, batch_size=16)
    assert isinstance(model.probe, SpatialFrameProbe) and metrics["probe_pos_err"] < 0.05
    batch = next(data.batches(3))
    z = model.encode(batch["obs"][:, 0])
    older = model.frames(z).clone()
    older[:, 0] = 0  # only the newest frame is read
    torch.testing.assert_close(model.read_state(older.flatten(1)), model.read_state(z))

    path = model.save(tmp_path / "diffusion")
    assert json.loads((path / "config.json").read_text())["family"] == "diffusion"
    loaded = load_model(path)
    assert isinstance(loaded, DiffusionWorldModel) and loaded.config == model.config
    torch.testing.assert_close(loaded.read_state(z), model.read_state(z))
    sigma = torch.full((3,), 0.7)
    hist, x, a = model.frames(z), torch.randn(3, 3, 16, 16), batch["actions"][:, 0]
    torch.testing.assert_close(loaded.denoise(x, sigma, hist, a), model.denoise(x, sigma, hist, a))


def test_checkpoints_saved_with_the_cnn_probe_keep_it(tmp_path: Path):
    data = MovingDots(pixels=True, image=16)
    model = small_diffusion(data, probe_fold=0)
    assert isinstance(model.probe, FrameProbe)
    path = model.save(tmp_path / "old")
    config = json.loads((path / "config.json").read_text())
    del config["probe_fold"]  # as saved before the field existed
    (path / "config.json").write_text(json.dumps(config))
    assert isinstance(load_model(path).probe, FrameProbe)
    with pytest.raises(ValueError, match="probe_fold 5 does not tile images of"):
        small_diffusion(data, probe_fold=5)


def test_a_short_training_run_lowers_the_loss(tmp_path: Path):
    data = MovingDots(episodes=64, pixels=True, image=16)
    torch.manual_seed(0)
    model = small_diffusion(data)
    cfg = TrainConfig(
        steps=80, batch_size=16, window=4, lr=3e-3, warmup=5, threads=1, out=str(tmp_path / "run"),
        checkpoint_every=1000, log_every=5, progress=False, probe_steps=0,
    )
    fit(model, data, cfg)
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    first, last = log[:3], log[-3:]
    mean = lambda rows, key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    assert mean(last, "loss") < 0.85 * mean(first, "loss")  # EDM losses are noisy: a clear, not a halving, fall
    assert mean(last, "denoise_mse") < mean(first, "denoise_mse")


def test_history_noise_perturbs_the_conditioning_frames_in_training_only():
    data = MovingDots(pixels=True, image=16)
    model = small_diffusion(data, history_noise=0.5)
    batch = next(data.batches(4))
    seen: list[torch.Tensor] = []
    unet_forward = model.unet.forward
    model.unet.forward = lambda x, c_noise, history, action: seen.append(history) or unet_forward(x, c_noise, history, action)
    torch.manual_seed(0)
    model.loss(batch)
    clean = model._histories(blocks.pixels_to_float(batch["obs"]))
    noise = (seen[0][:, None] - clean.flatten(0, 1)[None]).abs().amin(1)  # vs the nearest clean history
    assert noise.mean() > 0.05  # trained on noisy histories ...
    seen.clear()
    model.surprise(batch["obs"], batch["actions"])
    torch.testing.assert_close(seen[0], clean.flatten(0, 1))  # ... but samples from the true ones
