"""VAE + MDN-RNN: its losses, the two-stage schedule, the [z, h, c] contract, checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_models import MovingDots

from physworld.models import load_model, model_class
from physworld.models.probe import fit_probe
from physworld.models.rnn import RNNConfig, RNNWorldModel, mdn_draw, mdn_nll
from physworld.train import TrainConfig, fit

torch.set_num_threads(1)


def small_rnn(data: MovingDots, **kw) -> RNNWorldModel:
    defaults = dict(latent_dim=8, encoder_width=8, hidden=16, mixtures=3, vae_steps=2)
    return RNNWorldModel(RNNConfig(**{**defaults, **data.config, **kw}))


def test_registered_and_shapes_follow_the_contract():
    assert model_class("rnn") is RNNWorldModel
    data = MovingDots(pixels=True, image=16)
    model = small_rnn(data)
    batch = next(data.batches(4))
    size = 8 + 2 * 16
    z = model.encode(batch["obs"][:, 0])
    assert z.shape == (4, size) and torch.all(z[:, 8:] == 0)  # VAE mean, fresh memory
    assert model.predict(z, batch["actions"]).shape == (4, 4, size)
    assert model.decode(z).shape == (4, 3, 16, 16) and model.decode(z).dtype == torch.uint8
    assert model.surprise(batch["obs"], batch["actions"]).shape == (4, 4)
    # the contract's forecast from each frame's state: from the first frame, it is the rollout
    assert model.forecast_error(batch["obs"], batch["actions"], 2).shape == (4, 3)
    torch.testing.assert_close(
        model.forecast_error(batch["obs"], batch["actions"], 4)[:, 0],
        model.rollout_error(batch["obs"], batch["actions"])[:, -1],
    )
    with pytest.raises(ValueError, match="action dimension 3"):
        model.predict(z, torch.zeros(4, 2, 3))
    with pytest.raises(ValueError, match="cnn encoder reads pixels"):
        small_rnn(MovingDots(), encoder="cnn")
    with pytest.raises(ValueError, match="unknown rnn decoder 'deconv'"):
        small_rnn(data, decoder="deconv")


def test_mdn_nll_is_the_mixture_log_likelihood():
    torch.manual_seed(0)
    logits, mu, log_sigma, x = torch.randn(5, 3), torch.randn(5, 3, 4), 0.3 * torch.randn(5, 3, 4), torch.randn(5, 4)
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=logits),
        torch.distributions.Independent(torch.distributions.Normal(mu, log_sigma.exp()), 1),
    )
    torch.testing.assert_close(mdn_nll(logits, mu, log_sigma, x), -mixture.log_prob(x))
    # the deterministic draw is the mean of the most likely component
    torch.testing.assert_close(mdn_draw(logits, mu, log_sigma, 1.0, False), mu[torch.arange(5), logits.argmax(-1)])
    # temperature: sharper choice of component, wider Gaussians
    torch.manual_seed(1)
    draws = torch.stack([mdn_draw(logits[:1], mu[:1], log_sigma[:1] - 5, 1e-3, True) for _ in range(20)])
    torch.testing.assert_close(draws, mu[:1, logits[0].argmax()].expand_as(draws), atol=1e-3, rtol=0)


def test_vae_loss_has_free_bits_and_the_schedule_switches_stage():
    data = MovingDots()  # state vectors: the MLP VAE
    model = small_rnn(data, free_bits=100.0)
    model.calibrate(next(data.batches(32)))
    batch = next(data.batches(8))
    vae = model.loss(batch, step=0)
    assert vae["stage"] == 0 and {"recon", "kl", "active_dims"} <= set(vae)
    # every dimension is under its free bits: the KL term is a constant, only recon trains
    torch.testing.assert_close(vae["loss"].detach(), vae["recon"] + 100.0 * 8)
    rnn = model.loss(batch, step=2)
    assert rnn["stage"] == 1 and {"mdn_nll", "pred_mse"} <= set(rnn)
    rnn["loss"].backward()
    assert all(p.grad is None for p in model.vae.parameters())  # stage 2: the VAE is frozen
    assert all(p.grad is not None for p in model.rnn.parameters())


def test_memory_is_part_of_the_state_and_the_probe_reads_z_only():
    data = MovingDots()
    model = small_rnn(data).eval()
    batch = next(data.batches(3))
    with torch.no_grad():
        for p in model.rnn.parameters():  # an untrained head predicts "nothing moves": make it move
            p.normal_(0, 0.3)
        warm = model.encode_context(batch["obs"], batch["actions"])
        state = model.encode(batch["obs"][:, 0])
        for t in range(batch["actions"].shape[1]):
            state = model.observe(state, batch["actions"][:, t], batch["obs"][:, t + 1])
        torch.testing.assert_close(state, warm)  # stepping on real frames == warming up on the clip
        # predict is Markov in [z, h, c]: two rollouts chained == one rollout
        a = batch["actions"]
        whole = model.predict(warm, a)
        torch.testing.assert_close(model.predict(whole[:, 1], a[:, 2:]), whole[:, 2:])
        fit_probe(model, data, steps=5, frames=64, batch_size=8)
        noisy_memory = warm.clone()
        noisy_memory[:, 8:] = torch.randn_like(noisy_memory[:, 8:]) * 100
        torch.testing.assert_close(model.read_state(noisy_memory), model.read_state(warm))


@pytest.mark.parametrize("decoder", ["cnn", "broadcast"])
def test_save_load_round_trip(tmp_path: Path, decoder: str):
    data = MovingDots(pixels=True, image=16)
    model = small_rnn(data, temperature=1.3, decoder=decoder).eval()
    fit_probe(model, data, steps=5, frames=64, batch_size=8)
    path = model.save(tmp_path / "rnn")
    assert json.loads((path / "config.json").read_text())["family"] == "rnn"
    loaded = load_model(path)
    assert isinstance(loaded, RNNWorldModel) and loaded.config == model.config
    batch = next(data.batches(2))
    with torch.no_grad():
        z = model.encode_context(batch["obs"], batch["actions"])
        torch.testing.assert_close(loaded.encode_context(batch["obs"], batch["actions"]), z)
        torch.testing.assert_close(loaded.predict(z, batch["actions"]), model.predict(z, batch["actions"]))
        torch.testing.assert_close(loaded.read_state(z), model.read_state(z))
        torch.testing.assert_close(loaded.decode(z), model.decode(z))
    if decoder == "cnn":  # a checkpoint saved before the decoder was a choice: it was this one
        config = json.loads((path / "config.json").read_text())
        del config["decoder"]
        (path / "config.json").write_text(json.dumps(config))
        old = load_model(path)
        assert old.config.decoder == "cnn" and RNNConfig().decoder == "broadcast"
        torch.testing.assert_close(old.decode(z), model.decode(z))


def test_both_stages_learn_in_one_training_run(tmp_path: Path):
    data = MovingDots(episodes=64, pixels=True, image=16)
    torch.manual_seed(0)
    model = small_rnn(data, vae_steps=60)
    cfg = TrainConfig(
        steps=120, batch_size=16, window=4, lr=3e-3, warmup=5, threads=1, out=str(tmp_path / "run"),
        checkpoint_every=1000, log_every=10, progress=False, probe_steps=0,
    )
    fit(model, data, cfg)
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    vae = [m for m in log if m["stage"] == 0]
    rnn = [m for m in log if m["stage"] == 1]
    assert len(vae) == 6 and len(rnn) == 6
    assert vae[-1]["recon"] < 0.5 * vae[0]["recon"]
    assert rnn[-1]["mdn_nll"] < rnn[0]["mdn_nll"] - 0.1
    assert all(math.isfinite(m["loss"]) for m in log)
