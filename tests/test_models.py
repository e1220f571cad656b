"""The WorldModel contract, JEPA's parts, critics, the state probe, checkpoints.

``MovingDots`` (also used by test_train.py and test_distributed.py) is a procedural world with
known positions: dots pushed by their actions, bouncing in the unit arena, as state vectors or
as small rendered frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from physworld.models import JEPA, PIXEL_JEPA, JEPAConfig, blocks, load_model, model_class
from physworld.models.blocks import TransformerPredictor
from physworld.models.critics import EMATarget, SIGReg, VICReg, collapse_stats
from physworld.models.probe import SpatialProbe, fit_probe, position_error

torch.set_num_threads(1)  # the test machine has 2 shared cores: 1 thread each avoids thrashing


class MovingDots:
    """``dots`` objects in [0, 1]^2, velocity += 0.1 * action, damped, bouncing off the walls.

    State per dot: (x, y, vx, vy, angle=0, angvel=0). Batches are random windows; batch ``i`` of
    rank ``r`` depends only on (seed, i, r), so ``start`` resumes exactly.
    """

    def __init__(
        self,
        episodes: int = 16,
        steps: int = 24,
        window: int = 4,
        pixels: bool = False,
        image: int = 16,
        dots: int = 1,
        action_dim: int = 2,
        seed: int = 0,
    ):
        rng = np.random.default_rng(seed)
        self.window, self.pixels, self.image = window, pixels, image
        n = episodes
        pos = rng.uniform(0.15, 0.85, (n, dots, 2))
        vel = rng.normal(0, 0.03, (n, dots, 2))
        actions = rng.uniform(-1, 1, (n, steps, action_dim)).astype(np.float32)
        states = np.zeros((n, steps + 1, dots, 6), np.float32)
        for t in range(steps + 1):
            states[:, t, :, :2], states[:, t, :, 2:4] = pos, vel
            if t == steps:
                break
            vel = 0.9 * vel + 0.02 * actions[:, t, None, :2]
            pos = pos + vel
            for lo_hi in (pos < 0, pos > 1):
                vel = np.where(lo_hi, -vel, vel)
            pos = np.clip(pos, 0, 1)
        self.states = states.reshape(n, steps + 1, dots * 6)
        self.actions = actions
        self.obs = self.render(self.states) if pixels else self.states

    def render(self, states: np.ndarray) -> np.ndarray:
        """Gaussian blobs, one colour channel per dot (mod 3): uint8 [..., 3, H, W]."""
        grid = (np.arange(self.image) + 0.5) / self.image
        xy = states.reshape(*states.shape[:-1], -1, 6)[..., :2]
        frame = np.zeros((*states.shape[:-1], 3, self.image, self.image), np.float32)
        for d in range(xy.shape[-2]):
            gx = np.exp(-((grid - xy[..., d, 0, None]) ** 2) / 0.01)
            gy = np.exp(-((grid - (1 - xy[..., d, 1, None])) ** 2) / 0.01)  # y up
            frame[..., d % 3, :, :] += gy[..., :, None] * gx[..., None, :]
        return (np.clip(frame, 0, 1) * 255).astype(np.uint8)

    @property
    def config(self) -> dict:
        obs_shape = (3, self.image, self.image) if self.pixels else (self.states.shape[-1],)
        return dict(
            obs_kind="pixels" if self.pixels else "state",
            obs_shape=obs_shape,
            action_dim=self.actions.shape[-1],
            state_dim=self.states.shape[-1],
            arena_size=1.0,
        )

    def __len__(self) -> int:
        return len(self.actions) * (self.actions.shape[1] - self.window + 1)

    def batches(
        self, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0
    ):
        i = start
        while True:
            rng = np.random.default_rng([seed, i, rank])
            ep = rng.integers(0, len(self.actions), batch_size)
            t0 = rng.integers(0, self.actions.shape[1] - self.window + 1, batch_size)
            frames = t0[:, None] + np.arange(self.window + 1)
            steps = t0[:, None] + np.arange(self.window)
            yield {
                "obs": torch.from_numpy(self.obs[ep[:, None], frames]),
                "actions": torch.from_numpy(self.actions[ep[:, None], steps]),
                "states": torch.from_numpy(self.states[ep[:, None], frames]),
            }
            i += 1


def small_jepa(data: MovingDots, **kw) -> JEPA:
    defaults = dict(latent_dim=32, encoder_width=8, predictor_width=32, sigreg_projections=64)
    return JEPA(JEPAConfig(**{**defaults, **data.config, **kw}))


# --- the contract ---------------------------------------------------------------------------


def test_registry_resolves_families_by_name():
    assert model_class("jepa") is JEPA
    with pytest.raises(KeyError, match="unknown model family 'nope'.*jepa"):
        model_class("nope")
    with pytest.raises(ValueError, match="unknown JEPA critic 'x'"):
        JEPAConfig(critic="x")


@pytest.mark.parametrize(
    "pixels,encoder,predictor,critic,frames",
    [
        (True, "cnn", "transformer", "sigreg", 1),
        (True, "vit", "gru", "vicreg", 1),
        (True, "keypoints", "mlp", "ema", 1),
        (True, "grid", "transformer", "sigreg", 1),
        (True, "grid", "conv", "ema", 2),
        (False, "mlp", "mlp", "ema", 1),
        (False, "mlp", "transformer", "vicreg", 2),
    ],
)
def test_every_part_combination_fulfils_the_contract(pixels, encoder, predictor, critic, frames):
    data = MovingDots(episodes=2, pixels=pixels)
    model = small_jepa(
        data, encoder=encoder, predictor=predictor, critic=critic, idm_weight=1.0, frames=frames
    )
    batch = next(data.batches(3))
    z = model.encode(batch["obs"][:, 0])
    assert z.shape == (3, 32)
    assert model.encode(batch["obs"]).shape == (3, 5, 32)  # leading dims are kept
    assert model.predict(z, batch["actions"]).shape == (3, 4, 32)
    out = model.loss(batch, step=1)
    assert {"loss", "pred", "rollout", "critic", "idm", "std_mean", "std_min", "eff_rank"} <= set(
        out
    )
    assert all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused  # DDP (without find_unused_parameters) needs every trainable one used
    assert all(p.grad is None for p in model.probe.parameters())  # training never touches the probe
    assert model.surprise(batch["obs"], batch["actions"]).shape == (3, 4)
    assert not model.has_decoder
    with pytest.raises(NotImplementedError, match="no decoder"):
        model.decode(z)
    with pytest.raises(ValueError, match="action dimension 3 does not match the model's 2"):
        model.predict(z, torch.zeros(3, 4, 3))


@pytest.mark.parametrize("history", [1, 3])
def test_transformer_predictor_is_causal_and_its_cached_rollout_matches_recomputation(history):
    torch.manual_seed(0)
    pred = TransformerPredictor(dim=8, action_dim=2, width=16, depth=2, heads=2, history=history)
    for p in pred.parameters():  # leave the zero init so the blocks do something
        torch.nn.init.normal_(p, std=0.3)
    z, a = torch.randn(2, 6, 8), torch.randn(2, 6, 2)
    out = pred(z, a)
    z2, a2 = z.clone(), a.clone()
    z2[:, 4:], a2[:, 4:] = 5.0, 5.0
    torch.testing.assert_close(pred(z2, a2)[:, :4], out[:, :4])  # the future does not leak back

    # open loop with the key/value cache == teacher forcing on its own predictions (the window
    # slides past the first latents: 6 steps > history)
    history = [z[:, 0]]
    for t in range(6):
        history.append(pred(torch.stack(history, 1), a[:, : t + 1])[:, -1])
    torch.testing.assert_close(
        pred.rollout(z[:, 0], a), torch.stack(history[1:], 1), atol=1e-5, rtol=1e-5
    )


def test_untrained_predictors_start_as_identity():
    data = MovingDots(episodes=2, pixels=True)
    for kind in ("transformer", "mlp", "gru", "conv"):
        model = small_jepa(data, predictor=kind, encoder="grid")
        z = torch.randn(4, 32)
        assert torch.allclose(model.predict(z, torch.randn(4, 3, 2)), z[:, None].expand(4, 3, 32))


def test_frames_read_velocity_from_the_frames_before_each_one():
    data = MovingDots(episodes=2, pixels=True)
    model = small_jepa(data, encoder="grid", predictor="conv", frames=2)
    obs, actions = torch.as_tensor(data.obs[:, :6]), torch.as_tensor(data.actions[:, :5])
    clip = model.encode_clip(obs)
    # a frame alone is read as if it had been still; in a clip, with the frame before it
    torch.testing.assert_close(clip[:, 0], model.encode(obs[:, 0]))
    torch.testing.assert_close(model.encode_context(obs[:, 2:4]), clip[:, 3])
    still = obs[:, 3:4].expand(-1, 2, -1, -1, -1)
    assert not torch.allclose(model.encode_context(obs[:, 2:4]), model.encode_context(still))
    torch.testing.assert_close(model.encode_context(still), model.encode(obs[:, 3]))
    assert model.context_frames == 2
    with pytest.raises(ValueError, match="too short for frames=3"):
        small_jepa(data, frames=3).loss({"obs": obs[:, :3], "actions": actions[:, :2]})
    with pytest.raises(ValueError, match="conv predictor reads a latent map"):
        small_jepa(data, predictor="conv")
    with pytest.raises(ValueError, match="frames must be at least 1"):
        JEPAConfig(frames=0)


def test_pixel_recipe_reads_velocity_into_a_map_read_by_the_spatial_probe():
    model = JEPA(JEPAConfig(**PIXEL_JEPA, obs_shape=(3, 64, 64), action_dim=2, state_dim=18, arena_size=10.0))
    assert model.context_frames == 2 and model.latent_map() == (8, 8, 8)
    assert isinstance(model.predictor, blocks.ConvPredictor) and isinstance(model.probe, SpatialProbe)


def test_surprise_scores_each_step_from_the_observed_frames_before_it():
    data = MovingDots(episodes=2, pixels=True)
    model = small_jepa(data, predictor="mlp")
    for p in model.predictor.parameters():  # leave the identity init, so predictions depend on z
        torch.nn.init.normal_(p, std=0.3)
    obs, actions = torch.as_tensor(data.obs[:, :6]), torch.as_tensor(data.actions[:, :5])
    changed = obs.clone()
    changed[:, 3] = 255 - changed[:, 3]
    moved = (model.surprise(changed, actions) - model.surprise(obs, actions)).abs().amax(0)
    # frame 3 is step 2's target and (history-free predictor) step 3's only history; an open-loop
    # rollout from frame 0 would change step 2 alone
    assert moved[2] > 0 and moved[3] > 0 and moved[[0, 1, 4]].eq(0).all()


@pytest.mark.parametrize("predictor", ["gru", "transformer", "mlp"])
def test_forecast_predicts_each_frame_from_the_frames_seen_horizon_steps_before(predictor):
    data = MovingDots(episodes=2, pixels=True)
    model = small_jepa(data, predictor=predictor, history=3)
    for p in model.predictor.parameters():  # leave the identity init, so predictions depend on z
        torch.nn.init.normal_(p, std=0.3)
    obs, actions = torch.as_tensor(data.obs[:, :7]), torch.as_tensor(data.actions[:, :6])
    z = model.encode_clip(obs)
    for horizon in (1, 4):
        forecast = model.predictor.forecast(z, actions, horizon)
        assert forecast.shape == (2, 7 - horizon, 32)
        for s in range(7 - horizon):  # teacher forcing on what was seen, then on its own predictions
            seen = list(z[:, : s + 1].unbind(1))
            for j in range(horizon):
                seen.append(model.predictor(torch.stack(seen, 1), actions[:, : s + 1 + j])[:, -1])
            torch.testing.assert_close(forecast[:, s], seen[-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.forecast_error(obs, actions, 1), model.surprise(obs, actions))
    for bad in (0, 7):
        with pytest.raises(ValueError, match=f"forecast horizon of {bad} steps does not fit a clip of 6"):
            model.forecast_error(obs, actions, bad)


# --- critics and diagnostics ----------------------------------------------------------------


def test_sigreg_is_the_epps_pulley_statistic_of_random_projections():
    torch.manual_seed(0)
    x = torch.randn(512, 8) * 1.3 + 0.2
    sigreg = SIGReg(dim=8, projections=4, knots=301)
    u = sigreg.directions(3, torch.device("cpu"))
    h = (x @ u).double()  # brute force: N * integral over R of |ecf - phi|^2 exp(-t^2/2)
    t = torch.linspace(-3, 3, 6001, dtype=torch.float64)
    ecf = torch.exp(1j * h[..., None] * t).mean(0)
    gauss = torch.exp(-(t**2) / 2)
    expected = len(x) * torch.trapezoid((ecf - gauss).abs() ** 2 * gauss, t)
    torch.testing.assert_close(sigreg.statistics(x, 3).double(), expected, rtol=1e-3, atol=1e-4)


def test_sigreg_separates_gaussian_from_collapsed_and_is_seeded_by_step():
    torch.manual_seed(0)
    sigreg = SIGReg(dim=16, projections=128)
    gaussian = torch.randn(2048, 16)
    collapsed = torch.randn(2048, 1) * torch.ones(1, 16)
    assert sigreg(gaussian, 0) < 2.0  # E = sqrt(2 pi) (1 - 1/sqrt(3)) ~ 1.06 under N(0, I)
    assert sigreg(collapsed, 0) > 100 and sigreg(gaussian * 0.2 + 1, 0) > 1000
    cpu = torch.device("cpu")
    assert torch.equal(sigreg.directions(7, cpu), sigreg.directions(7, cpu))
    assert not torch.equal(sigreg.directions(7, cpu), sigreg.directions(8, cpu))


def test_vicreg_and_collapse_diagnostics():
    torch.manual_seed(0)
    gaussian, collapsed = torch.randn(1024, 16), torch.ones(1024, 16) * 3
    assert VICReg(16)(gaussian) < 0.1 and VICReg(16)(collapsed) > 0.9
    full, line = collapse_stats(gaussian), collapse_stats(torch.randn(1024, 1) * torch.ones(1, 16))
    assert full["eff_rank"] > 14 and line["eff_rank"] < 1.1
    assert full["std_min"] > 0.8 and float(collapse_stats(collapsed)["std_mean"]) == 0.0
    # a near-constant dimension far from zero (a grid cell that always shows the wall): its
    # summed moments cancel to a slightly negative variance, which once made the loss NaN
    for seed in range(5):
        torch.manual_seed(seed)
        wall = torch.randn(256, 8)
        wall[:, 0] = 100.0 + 1e-4 * torch.randn(256)
        assert torch.isfinite(VICReg(8)(wall))


def test_keypoint_encoder_reads_where_each_channel_fires():
    """The soft-argmax turns a channel that fires at one cell into that cell's (x, y) in [-1, 1]."""
    encoder = blocks.KeypointEncoder((3, 16, 16), dim=8, keypoints=2)
    fires = torch.full((1, 2, 4, 4), -30.0)
    fires[0, 0, 1, 3] = 30.0  # row 1, column 3 of the 4x4 map
    fires[0, 1, 3, 0] = 30.0

    class Fires(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return fires

    encoder.trunk, encoder.head = Fires(), torch.nn.Identity()
    out = encoder(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    where, strength = out[0, :4].view(2, 2), out[0, 4:]
    assert torch.allclose(where, torch.tensor([[1.0, -1 / 3], [-1.0, 1.0]]), atol=1e-4)
    assert (strength > 20).all()  # log-sum-exp of one large logit, less log(16 cells)


def test_grid_encoder_latent_is_a_map_of_local_features():
    """Each latent value sees one region: a change in the top-left corner leaves the far cells'
    values as they were (the point of the grid: no global head to mix objects away)."""
    encoder = blocks.GridEncoder((3, 64, 64), dim=256)
    frame = torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8)
    changed = frame.clone()
    changed[..., :8, :8] = 255 - changed[..., :8, :8]
    with torch.no_grad():
        before, after = (encoder(x).view(4, 8, 8) for x in (frame, changed))
    moved = (before - after).abs().amax(0) > 1e-6
    assert moved[0, 0] and not moved[4:, :].any() and not moved[:, 4:].any()
    with pytest.raises(ValueError, match="latent_dim 100 must be a multiple of 64"):
        blocks.GridEncoder((3, 64, 64), dim=100)
    with pytest.raises(ValueError, match="at least 8x8 pixels, not 4x4"):
        blocks.GridEncoder((3, 4, 4), dim=16)


def test_ema_target_tracks_the_online_encoder():
    online = torch.nn.Linear(4, 4)
    ema = EMATarget(online, decay=0.5)
    assert not any(p.requires_grad for p in ema.encoder.parameters())
    with torch.no_grad():
        online.weight.add_(1.0)
    before = ema.encoder.weight.clone()
    ema.update(online)
    torch.testing.assert_close(ema.encoder.weight, before + 0.5)


# --- probe and checkpoints ------------------------------------------------------------------


def test_probe_must_be_fitted_and_reads_positions_from_frames(tmp_path: Path):
    torch.manual_seed(0)
    data = MovingDots(episodes=200, pixels=True, dots=1)
    model = small_jepa(data)
    z = model.encode(next(data.batches(2))["obs"][:, 0])
    with pytest.raises(RuntimeError, match="never fitted"):
        model.read_state(z)
    held_out = MovingDots(episodes=40, pixels=True, seed=1)
    metrics = fit_probe(model, data, steps=300, frames=2000, eval_windows=held_out)
    assert metrics["probe_pos_err"] < 0.1, metrics  # even an untrained CNN keeps where the dot is

    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    batch = next(held_out.batches(8))
    torch.testing.assert_close(
        loaded.read_state(loaded.encode(batch["obs"][:, 0])),
        model.read_state(model.encode(batch["obs"][:, 0])),
    )
    err = position_error(
        loaded.read_state(loaded.encode(batch["obs"][:, 0])), batch["states"][:, 0]
    )
    assert err < 0.1


def test_checkpoint_round_trip_and_damaged_checkpoints(tmp_path: Path):
    data = MovingDots(episodes=2)
    model = small_jepa(data, critic="ema")
    path = model.save(tmp_path / "m")
    assert json.loads((path / "config.json").read_text())["critic"] == "ema"
    loaded = load_model(path)
    assert isinstance(loaded, JEPA) and loaded.config == model.config
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)

    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match="cannot read model.safetensors"):
        load_model(path)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_model(path)


def test_optional_decoder_draws_frames_from_stop_grad_latents():
    data = MovingDots(episodes=2, pixels=True)
    model = small_jepa(data, decoder=True)
    out = model.loss(next(data.batches(3)))
    out["loss"].backward()
    assert out["recon"] > 0 and model.decoder.trunk[0].weight.grad is not None
    assert model.has_decoder
    frames = model.decode(torch.randn(3, 32))
    assert frames.shape == (3, 3, 16, 16) and frames.dtype == torch.uint8
    with pytest.raises(ValueError, match="needs pixel observations"):
        small_jepa(MovingDots(episodes=2), decoder=True)


def test_bf16_autocast_loss_is_finite():
    data = MovingDots(episodes=2, pixels=True)
    model = small_jepa(data)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.loss(next(data.batches(4)), step=0)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])


def test_state_reconstruction_keeps_every_state_value_in_the_latent():
    torch.manual_seed(0)
    data = MovingDots(episodes=8, dots=2)
    model = small_jepa(data, predictor="mlp", critic="vicreg", recon_weight=1.0)
    model.calibrate(next(data.batches(64)))
    batch = next(data.batches(8))
    out = model.loss(batch)
    (grad,) = torch.autograd.grad(out["recon"], model.encoder.net[0].weight, retain_graph=True)
    assert out["recon"] > 0 and grad.abs().sum() > 0  # it shapes the latent, not only a head
    only_encoded = small_jepa(data, predictor="mlp", critic="vicreg", recon_weight=1.0, recon_predicted=False)
    only_encoded.load_state_dict(model.state_dict())
    assert only_encoded.loss(batch)["recon"] < out["recon"]  # predicted latents add their own terms
    # on encoded latents alone, the term is the L1 (default) or the squared error of the decoding
    with torch.no_grad():
        goal = (batch["obs"] - model.encoder.loc) / model.encoder.scale
        gap = model.state_decoder(model.encode(batch["obs"])) - goal
        squared = small_jepa(data, predictor="mlp", critic="vicreg", recon_weight=1.0, recon_predicted=False, recon_error="mse")
        squared.load_state_dict(model.state_dict())
        assert torch.isclose(only_encoded.loss(batch)["recon"], gap.abs().mean())
        assert torch.isclose(squared.loss(batch)["recon"], gap.pow(2).mean())

    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for i, b in zip(range(100), data.batches(32, seed=1), strict=False):
        loss = model.loss(b, step=i)
        opt.zero_grad()
        loss["loss"].backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        z = model.encode(batch["obs"][:, 0])
        decoded = model.state_decoder(z) * model.encoder.scale + model.encoder.loc
    moving = model.encoder.scale > 1e-2  # angle/angvel are constant zeros in MovingDots
    err = (decoded - batch["obs"][:, 0]).abs()[:, moving] / model.encoder.scale[moving]
    assert err.mean() < 0.25  # under a quarter of a standard deviation per value


def test_state_reconstruction_is_off_in_old_configs(tmp_path: Path):
    from physworld.models import STATE_JEPA

    data = MovingDots(episodes=2)
    path = small_jepa(data).save(tmp_path / "m")
    saved = json.loads((path / "config.json").read_text())
    for key in ("recon_weight", "recon_predicted", "recon_error"):
        saved.pop(key)
    (path / "config.json").write_text(json.dumps(saved))
    old = load_model(path)
    assert old.config.recon_weight == 0 and not hasattr(old, "state_decoder")
    # configs saved with the boolean recon_l1 keep the error they trained with
    assert JEPAConfig.from_dict({**saved, "recon_l1": False}).recon_error == "mse"
    assert JEPAConfig.from_dict({**saved, "recon_l1": True}).recon_error == "l1"
    assert "recon" not in old.loss(next(data.batches(2)))

    assert hasattr(small_jepa(data, **STATE_JEPA), "state_decoder") == bool(STATE_JEPA.get("recon_weight"))


def test_pixel_reconstruction_trains_the_encoder_through_the_frame_decoder():
    """On pixels, ``recon_weight`` decodes frames and its gradient reaches the encoder (unlike
    ``decoder=True`` alone, whose decoder learns on stop-grad latents)."""
    torch.manual_seed(0)
    data = MovingDots(episodes=4, pixels=True)
    batch = next(data.batches(3))
    model = small_jepa(data, recon_weight=1.0, recon_predicted=False)
    out = model.loss(batch)
    (grad,) = torch.autograd.grad(out["recon"], model.encoder.trunk[0].weight)
    assert grad.abs().sum() > 0 and model.has_decoder and not hasattr(model, "state_decoder")
    with torch.no_grad():
        frames = blocks.pixels_to_float(batch["obs"])
        gap = model.decoder(model.encode(batch["obs"]).flatten(0, 1)) - frames.flatten(0, 1)
    assert torch.isclose(out["recon"], gap.pow(2).mean())  # "auto": the squared error on frames
    predicted = small_jepa(data, recon_weight=1.0)
    predicted.load_state_dict(model.state_dict())
    assert predicted.loss(batch)["recon"] > out["recon"]  # predicted latents add their own terms
    assert model.decode(torch.randn(2, 32)).shape == (2, 3, 16, 16)

    stop_grad = small_jepa(data, decoder=True)
    out = stop_grad.loss(batch)
    (grad,) = torch.autograd.grad(out["recon"], stop_grad.encoder.trunk[0].weight, allow_unused=True)
    assert grad is None or grad.abs().sum() == 0


def test_checkpoint_saved_before_inverse_dynamics_loads_with_it_off(tmp_path: Path):
    """Checkpoints written before ``idm_weight`` existed have no IDM head: loading must not expect one."""
    data = MovingDots(episodes=2)
    path = small_jepa(data).save(tmp_path / "m")
    saved = json.loads((path / "config.json").read_text())
    saved.pop("idm_weight")
    (path / "config.json").write_text(json.dumps(saved))
    old = load_model(path)  # strict: a non-zero default would ask for IDM weights the file lacks
    assert old.config.idm_weight == 0 and not hasattr(old, "idm")
    assert "idm" not in old.loss(next(data.batches(2)))


def test_spatial_probe_reads_grid_latents_where_the_mlp_memorises(tmp_path: Path):
    """On a grid latent the soft-argmax probe places the dot from held-out episodes better than
    the flat MLP fitted on the same frames, and survives a save/load round trip."""
    data = MovingDots(episodes=40, pixels=True, image=64, dots=3)
    held_out = MovingDots(episodes=30, pixels=True, image=64, dots=3, seed=1)
    errors, models = {}, {}
    for spatial in (True, False):
        torch.manual_seed(0)
        models[spatial] = small_jepa(data, encoder="grid", latent_dim=256, probe_spatial=spatial)
        assert isinstance(models[spatial].probe, SpatialProbe) is spatial
        fit = fit_probe(models[spatial], data, steps=200, frames=1000, eval_windows=held_out)
        errors[spatial] = fit["probe_pos_err"]
    assert errors[True] < 0.08 and errors[True] < errors[False] / 2, errors  # measured 0.056, 0.185

    model = models[True]
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    obs = next(held_out.batches(8))["obs"][:, 0]
    assert isinstance(loaded.probe, SpatialProbe)
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    del saved["probe_spatial"]  # a config saved before the spatial probe had an MLP probe
    assert JEPAConfig.from_dict(saved).probe_spatial is False
    torch.testing.assert_close(loaded.read_state(loaded.encode(obs)), model.read_state(model.encode(obs)))


def test_broadcast_decoder_draws_an_object_where_its_coordinates_say():
    """Given only (x, y), the broadcast decoder learns to draw a dot there, at places it never
    drew it, in a budget where the deconvolution decoder still draws about the mean image."""
    size = 16

    def dots(xy: torch.Tensor) -> torch.Tensor:
        grid = torch.arange(size).float()
        d2 = (grid[None, None, :] - xy[:, 0, None, None]) ** 2 + (grid[None, :, None] - xy[:, 1, None, None]) ** 2
        return (2 * (d2 < 4).float() - 1)[:, None].expand(-1, 3, -1, -1)

    held_out = torch.tensor([[4.2, 11.7], [12.5, 3.3], [8.0, 8.0]])
    truth = dots(held_out)

    def error_after_training(decoder: torch.nn.Module) -> float:
        torch.manual_seed(0)
        opt = torch.optim.Adam(decoder.parameters(), lr=3e-3)
        for _ in range(300):
            xy = torch.rand(64, 2) * (size - 5) + 2.5
            loss = torch.nn.functional.mse_loss(decoder(xy / size * 2 - 1), dots(xy))
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return torch.nn.functional.mse_loss(decoder(held_out / size * 2 - 1), truth).item()

    torch.manual_seed(0)
    broadcast = error_after_training(blocks.BroadcastDecoder((3, size, size), dim=2, width=8, fold=2))
    deconv = error_after_training(blocks.CNNDecoder((3, size, size), dim=2, width=8))
    mean_image = torch.nn.functional.mse_loss(truth.mean(0, keepdim=True).expand_as(truth), truth).item()
    assert broadcast < 0.3 * mean_image and broadcast < 0.5 * deconv, (broadcast, deconv, mean_image)
    with pytest.raises(ValueError, match="fold 3 does not tile 16x16"):
        blocks.BroadcastDecoder((3, size, size), dim=2, fold=3)
