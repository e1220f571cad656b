"""A pixel-space diffusion world model (DIAMOND-style, small): the next frame is *sampled*.

A denoiser ``D(x_noisy, sigma | last frames, action)`` is trained with EDM (Karras et al. 2022):
noise levels drawn log-normally, the network ``F`` wrapped in EDM's preconditioning

    D = c_skip(sigma) * x_noisy + c_out(sigma) * F(c_in(sigma) * x_noisy, c_noise(sigma), ...)

and the loss ``||D - x||^2`` weighted by ``1 / c_out^2``. The preconditioning and the few-step
sampler (3 Euler steps by default, as DIAMOND uses) are diffusers' ``EDMEulerScheduler`` (or
``EDMDPMSolverMultistepScheduler``): its ``precondition_inputs/noise/outputs`` for training and its
``set_timesteps / scale_model_input / step`` loop for sampling, so none of EDM is re-derived here.

What is diffused is the next frame itself, as in DIAMOND. ``residual=True`` diffuses the change
from the newest frame instead: its loss falls faster (the static background is exactly zero), but
the small errors of every sampled change add up over an autoregressive rollout (grain that
accumulates on the background), so it is off by default.

``F`` is a small U-Net (:class:`UNet`): the noisy next frame and the ``history`` previous frames
are stacked as channels and folded 2x2 into channels (``pixel_unshuffle``) so every convolution
runs at 1/2 resolution or below; residual blocks are modulated (adaptive group norm, as in
DIAMOND) by an embedding of the noise level plus one of the action.

**The WorldModel contract.** The latent state is the frame history itself, flattened:
``[B, history * C * H * W]`` floats in [-1, 1] (oldest first), so ``predict`` (autoregressive
sampling, one denoising loop per step) is Markov in it. ``encode(obs)`` starts a history from one
frame, repeated ("at rest": a single frame shows no velocity); :meth:`DiffusionWorldModel.encode_context`
starts from the last ``history`` frames of a clip. ``decode`` is the newest frame as uint8.
``surprise`` is the per-step error of a one-step prediction from the true history.

**Scoring.** Object positions come from the shared state probe mechanism: ``fit_probe`` fits
:class:`SpatialFrameProbe`, the soft-argmax probe over the *newest frame* of the latent folded into
cells, on encoded real frames; evaluation then applies it to the generated frames of a rollout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from physworld.models import blocks
from physworld.models.base import Data, ModelConfig, WorldModel, check_choice, register_model
from physworld.models.probe import SpatialProbe, StateProbe
from physworld.models.rnn import some_steps

Sampler = Literal["euler", "dpmsolver"]


@dataclass
class DiffusionConfig(ModelConfig):
    """Diffusion world model hyper-parameters (data-derived fields are filled by ``train``)."""

    family: Annotated[str, Data] = "diffusion"
    history: int = 2  # previous frames the denoiser is conditioned on (2: enough for velocities)
    fold: int = 2  # pixels folded into channels (fold x fold) before the U-Net: its first level runs at 1/fold size
    channels: tuple[int, ...] = (16, 32, 64)  # U-Net widths per level (each level halves the size)
    blocks: int = 1  # residual blocks per U-Net level (each way)
    residual: bool = False  # diffuse the change from the newest frame, x[t+1] - x[t], not x[t+1]
    sampling_steps: int = 3  # denoising steps per generated frame
    sampler: Sampler = (
        "euler"  # "euler" (EDMEulerScheduler) | "dpmsolver" (EDMDPMSolverMultistepScheduler)
    )
    sigma_min: float = 2e-3  # sampling noise range (DIAMOND's values)
    sigma_max: float = 5.0
    rho: float = 7.0  # Karras schedule curvature
    sigma_data: float = 0.5  # data std assumed by the preconditioning (pixels in [-1, 1])
    transitions: int = (
        2  # transitions per window trained on per step (random; 0: all): neighbouring
    )
    # transitions are near duplicates, so a few per window carry most of the signal at a fraction of the cost
    history_noise: float = 0.0  # training only: the conditioning frames get Gaussian noise of a std
    # drawn per sample from U(0, history_noise), so the model learns to read imperfect histories (its
    # own generated frames, in a rollout) as GameNGen does; 0: off (checkpoints without this field)
    p_mean: float = -0.4  # training noise levels: log(sigma) ~ N(p_mean, p_std^2)
    p_std: float = 1.2
    probe_fold: int = 4  # the probe reads the newest frame in cells of probe_fold x probe_fold pixels
    # (the soft-argmax probe); 0: the CNN probe that checkpoints without this field were saved with
    probe_width: int = 8  # base channels of that CNN probe

    def __post_init__(self) -> None:
        super().__post_init__()
        self.channels = tuple(self.channels)
        if self.obs_kind != "pixels":
            raise ValueError("the diffusion model generates pixels; collect with --obs pixels")
        check_choice("sampler", self.sampler, get_args(Sampler))
        if self.history < 1 or self.sampling_steps < 1 or not self.channels:
            raise ValueError("history, sampling_steps and channels must all be at least 1")
        if self.probe_fold < 0 or (self.probe_fold and (self.obs_shape[1] % self.probe_fold or self.obs_shape[2] % self.probe_fold)):
            raise ValueError(f"probe_fold {self.probe_fold} does not tile images of {self.obs_shape[1:]} pixels")
        size = self.fold * 2 ** (len(self.channels) - 1)
        if self.obs_shape[1] % size or self.obs_shape[2] % size:
            raise ValueError(
                f"image size {self.obs_shape[1:]} must be a multiple of {size} for {len(self.channels)} U-Net levels"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DiffusionConfig:
        if "probe_input" in values and "probe_fold" not in values:  # saved with the CNN probe
            values = {**values, "probe_fold": 0}
        return super().from_dict(values)

    @property
    def frame_size(self) -> int:
        return math.prod(self.obs_shape)


# --- the denoiser -----------------------------------------------------------------------------


class AdaGNBlock(nn.Module):
    """Residual block: (adaptive group norm -> SiLU -> 3x3 conv) twice; the condition sets the
    norms' scale and shift. The last convolution starts at zero, so the block starts as the identity."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.norms = nn.ModuleList(
            nn.GroupNorm(min(8, channels), channels, affine=False) for _ in range(2)
        )
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(2))
        self.film = nn.Linear(cond_dim, 4 * channels)
        nn.init.zeros_(self.convs[1].weight)
        nn.init.zeros_(self.convs[1].bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h, films = x, self.film(cond)[..., None, None].chunk(4, 1)
        for i, (norm, conv) in enumerate(zip(self.norms, self.convs, strict=True)):
            h = conv(F.silu(norm(h) * (1 + films[2 * i]) + films[2 * i + 1]))
        return x + h


def fourier(x: Tensor, size: int) -> Tensor:
    """Sinusoidal features of a scalar per sample (here EDM's c_noise = log(sigma) / 4)."""
    freqs = torch.exp(torch.linspace(0, math.log(1000), size // 2, device=x.device))
    angles = x.float()[:, None] * freqs
    return torch.cat([angles.sin(), angles.cos()], -1)


class UNet(nn.Module):
    """``F(c_in * x_noisy, c_noise | history, action)``: the EDM network, see the module docstring."""

    def __init__(
        self,
        frame_channels: int,
        history: int,
        action_dim: int,
        channels: tuple[int, ...],
        depth: int,
        fold: int,
    ):
        super().__init__()
        self.fold = fold
        cond = 4 * channels[0]
        self.noise_embed = nn.Sequential(nn.Linear(cond, cond), nn.SiLU(), nn.Linear(cond, cond))
        self.action_embed = nn.Sequential(
            nn.Linear(action_dim, cond), nn.SiLU(), nn.Linear(cond, cond)
        )
        self.stem = nn.Conv2d(fold**2 * frame_channels * (history + 1), channels[0], 3, padding=1)
        self.down_blocks, self.downs, self.up_blocks, self.ups, self.merges = (
            nn.ModuleList() for _ in range(5)
        )
        for i, ch in enumerate(channels):
            self.down_blocks.append(nn.ModuleList(AdaGNBlock(ch, cond) for _ in range(depth)))
            self.up_blocks.append(nn.ModuleList(AdaGNBlock(ch, cond) for _ in range(depth)))
            self.merges.append(nn.Conv2d(2 * ch, ch, 1))
            if i + 1 < len(channels):
                self.downs.append(nn.Conv2d(ch, channels[i + 1], 4, stride=2, padding=1))
                self.ups.append(nn.ConvTranspose2d(channels[i + 1], ch, 4, stride=2, padding=1))
        self.out_norm = nn.GroupNorm(min(8, channels[0]), channels[0])
        self.out = blocks.zero_(nn.Conv2d(channels[0], fold**2 * frame_channels, 3, padding=1))  # type: ignore[arg-type]

    def forward(self, x: Tensor, c_noise: Tensor, history: Tensor, action: Tensor) -> Tensor:
        """``x [B, C, H, W]`` (preconditioned), ``c_noise [B]``, ``history [B, K, C, H, W]``,
        ``action [B, A]`` -> ``F`` ``[B, C, H, W]``."""
        cond = F.silu(
            self.noise_embed(fourier(c_noise, self.noise_embed[0].in_features))
            + self.action_embed(action)
        )
        h = self.stem(F.pixel_unshuffle(torch.cat([x, history.flatten(1, 2)], 1), self.fold))
        skips = []
        for i, level in enumerate(self.down_blocks):
            for block in level:
                h = block(h, cond)
            skips.append(h)
            if i < len(self.downs):
                h = self.downs[i](h)
        for i in reversed(range(len(self.up_blocks))):
            if i < len(self.ups):
                h = self.ups[i](h)
            h = self.merges[i](torch.cat([h, skips[i]], 1))
            for block in self.up_blocks[i]:
                h = block(h, cond)
        return F.pixel_shuffle(self.out(F.silu(self.out_norm(h))), self.fold)


# --- the state probe on generated frames ----------------------------------------------------


class NewestFrame(nn.Module):
    """Flattened frame history ``[B, K * C * H * W]`` -> its newest frame ``[B, C, H, W]``."""

    def __init__(self, frame_shape: tuple[int, ...]):
        super().__init__()
        self.frame_shape = tuple(frame_shape)

    def forward(self, z: Tensor) -> Tensor:
        return z[:, -math.prod(self.frame_shape) :].reshape(-1, *self.frame_shape)


class FrameProbe(StateProbe):
    """The state probe of checkpoints saved before :class:`SpatialFrameProbe`: a small CNN on the
    newest frame. ``fit_probe`` uses it unchanged; only the latent standardisation is fixed (frames are already
    in [-1, 1], and a per-pixel z-score would blow up on pixels that never change in training).
    """

    def __init__(
        self,
        latent_size: int,
        frame_shape: tuple[int, ...],
        state_dim: int,
        hidden: int,
        width: int,
    ):
        super().__init__(latent_size, state_dim, hidden=0)
        hidden = hidden or 128
        self.net = nn.Sequential(
            NewestFrame(frame_shape),
            blocks.CNNEncoder(frame_shape, hidden, width),
            nn.GELU(),
            nn.Linear(hidden, state_dim),
        )
        self.requires_grad_(False)

    @torch.no_grad()
    def reset(self, z: Tensor, states: Tensor) -> None:
        super().reset(z, states)
        self.z_loc.zero_()
        self.z_scale.fill_(1.0)


class SpatialFrameProbe(SpatialProbe):
    """The state probe for pixel-history latents: the soft-argmax probe (the grid JEPA's) over the
    newest frame, folded into cells of ``fold x fold`` pixels (``pixel_unshuffle``).

    It reads an object the same way wherever it is in the frame; the CNN probe with a dense head
    (:class:`FrameProbe`) memorised its training frames (README, "Three model families").
    """

    def __init__(self, frame_shape: tuple[int, ...], state_dim: int, arena_size: float, fold: int):
        channels, rows, cols = frame_shape
        super().__init__(
            math.prod(frame_shape), state_dim, (channels * fold**2, rows // fold, cols // fold), cols, arena_size
        )
        self.newest, self.fold = NewestFrame(frame_shape), fold

    def cells(self, z: Tensor) -> Tensor:
        return F.pixel_unshuffle(self.newest(z), self.fold).flatten(1)

    def standardised(self, z: Tensor) -> Tensor:
        return super().standardised(self.cells(z))

    @torch.no_grad()
    def reset(self, z: Tensor, states: Tensor) -> None:
        super().reset(self.cells(z), states)
        self.z_loc.zero_()  # frames are in [-1, 1] already (see FrameProbe)
        self.z_scale.fill_(1.0)


# --- the model --------------------------------------------------------------------------------


def make_scheduler(c: DiffusionConfig):
    """diffusers' EDM scheduler for this config (imported here: diffusers is the `diffusion` extra)."""
    try:
        from diffusers import EDMDPMSolverMultistepScheduler, EDMEulerScheduler
    except ImportError as err:
        raise ImportError(
            "the diffusion model needs diffusers: pip install 'physworld[diffusion]'"
        ) from err
    cls = EDMEulerScheduler if c.sampler == "euler" else EDMDPMSolverMultistepScheduler
    return cls(sigma_min=c.sigma_min, sigma_max=c.sigma_max, sigma_data=c.sigma_data, rho=c.rho)


@register_model("diffusion")
class DiffusionWorldModel(WorldModel):
    """Pixel-space EDM diffusion over the next frame; see the module docstring."""

    config_class = DiffusionConfig
    config: DiffusionConfig

    def __init__(self, config: DiffusionConfig | dict):
        super().__init__(config)
        c = self.config
        self.scheduler = make_scheduler(c)
        self.unet = UNet(c.obs_shape[0], c.history, c.action_dim, c.channels, c.blocks, c.fold)
        if c.state_dim and not c.probe_input:
            self.attach_probe(c.history * c.frame_size)

    def attach_probe(self, latent_size: int) -> StateProbe:
        c = self.config
        if not c.state_dim:
            raise ValueError("this model was built without a state_dim: there is no state to probe")
        c.probe_input = latent_size
        if c.probe_fold:
            self.probe = SpatialFrameProbe(c.obs_shape, c.state_dim, c.arena_size, c.probe_fold)
        else:
            self.probe = FrameProbe(latent_size, c.obs_shape, c.state_dim, c.probe_hidden, c.probe_width)
        return self.probe

    # --- frames <-> latent state --------------------------------------------------------------
    def _check_frames(self, obs: Tensor) -> None:
        if tuple(obs.shape[-3:]) != tuple(self.config.obs_shape):
            raise ValueError(
                f"frames of shape {tuple(obs.shape[-3:])} do not match the model's {self.config.obs_shape}"
            )

    def frames(self, z: Tensor) -> Tensor:
        """Latent ``[B, D]`` -> its frame history ``[B, history, C, H, W]`` in [-1, 1]."""
        return z.reshape(-1, self.config.history, *self.config.obs_shape)

    @property
    def context_frames(self) -> int:
        return self.config.history

    def encode(self, obs: Tensor) -> Tensor:
        """One frame ``[..., C, H, W]`` -> a history at rest ``[..., history * C * H * W]``."""
        self._check_frames(obs)
        x = blocks.pixels_to_float(obs).unsqueeze(-4)
        return x.expand(*x.shape[:-4], self.config.history, *x.shape[-3:]).flatten(-4)

    def encode_context(self, obs: Tensor, actions: Tensor | None = None) -> Tensor:
        """The last ``history`` frames of a clip ``obs [B, T+1, C, H, W]`` (padded with its first)."""
        self._check_frames(obs)
        return self._histories(blocks.pixels_to_float(obs), end=True).flatten(1)

    def _histories(self, x: Tensor, end: bool = False) -> Tensor:
        """Clip ``[B, T+1, ...]`` -> the history before each transition ``[B, T, K, ...]``
        (or, with ``end``, the history after the last frame ``[B, K, ...]``); padded at the start."""
        k = self.config.history
        padded = torch.cat([x[:, :1].expand(-1, k - 1, -1, -1, -1), x], 1) if k > 1 else x
        if end:
            return padded[:, -k:]
        return padded.unfold(1, k, 1)[:, : x.shape[1] - 1].permute(0, 1, 5, 2, 3, 4)

    def decode(self, z: Tensor) -> Tensor:
        """Latent ``[B, D]`` -> the newest frame as uint8 ``[B, C, H, W]``."""
        return blocks.float_to_pixels(self.frames(z)[:, -1])

    # --- denoising and sampling ------------------------------------------------------------------
    def denoise(self, noisy: Tensor, sigma: Tensor, history: Tensor, action: Tensor) -> Tensor:
        """EDM's ``D(x_noisy, sigma)``; ``sigma [B]``. The preconditioning is the scheduler's."""
        s = self.scheduler
        sigma4 = sigma.view(-1, 1, 1, 1).to(noisy.dtype)
        out = self.unet(
            s.precondition_inputs(noisy, sigma4), s.precondition_noise(sigma), history, action
        )
        return s.precondition_outputs(noisy, out, sigma4)

    @torch.no_grad()
    def sample_next(self, history: Tensor, action: Tensor) -> Tensor:
        """One frame ``[B, C, H, W]`` sampled given ``history [B, K, C, H, W]`` and ``action [B, A]``."""
        s = self.scheduler
        s.set_timesteps(self.config.sampling_steps, device=history.device)
        x = torch.randn_like(history[:, -1]) * s.sigmas[0].item()
        for t in s.timesteps:
            c_noise = t.expand(len(x)).to(x.dtype)
            x = s.step(
                self.unet(s.scale_model_input(x, t), c_noise, history, action), t, x
            ).prev_sample
        return (x + history[:, -1] if self.config.residual else x).clamp(-1, 1)

    # --- the contract -----------------------------------------------------------------------
    def predict(self, z: Tensor, actions: Tensor) -> Tensor:
        """Autoregressive rollout: each step samples the next frame and slides the history."""
        self.check_actions(actions)
        hist, out = self.frames(z), []
        for t in range(actions.shape[1]):
            nxt = self.sample_next(hist, actions[:, t].to(hist.dtype))
            hist = torch.cat([hist[:, 1:], nxt[:, None]], 1)
            out.append(hist.flatten(1))
        return torch.stack(out, 1)

    @torch.no_grad()
    def surprise(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Per-step MSE ``[B, T]`` of the frame sampled from the *true* history vs the true next frame."""
        x = blocks.pixels_to_float(obs)
        hist = self._histories(x).flatten(0, 1)
        pred = self.sample_next(hist, actions.flatten(0, 1).to(x.dtype))
        return (pred - x[:, 1:].flatten(0, 1)).pow(2).flatten(1).mean(-1).view(actions.shape[:2])

    def loss(self, batch: dict[str, Tensor], step: int = 0) -> dict[str, Tensor]:
        """EDM denoising loss on ``transitions`` random transitions of every window."""
        c = self.config
        self.check_actions(batch["actions"])
        x = blocks.pixels_to_float(batch["obs"])  # [B, T+1, C, H, W]
        self._check_frames(x)
        hist, target, actions = (
            t.flatten(0, 1)
            for t in some_steps(
                c.transitions, self._histories(x), x[:, 1:], batch["actions"].to(x.dtype)
            )
        )
        if c.residual:
            target = target - hist[:, -1]
        if c.history_noise:
            level = c.history_noise * torch.rand(len(hist), 1, 1, 1, 1, device=x.device)
            hist = hist + level * torch.randn_like(hist)
        sigma = torch.exp(c.p_mean + c.p_std * torch.randn(len(target), device=x.device))
        denoised = self.denoise(
            target + sigma.view(-1, 1, 1, 1) * torch.randn_like(target), sigma, hist, actions
        )
        weight = (sigma**2 + c.sigma_data**2) / (sigma * c.sigma_data) ** 2  # 1 / c_out^2
        err = (denoised - target).pow(2).flatten(1).mean(-1)
        return {"loss": (weight * err).mean(), "denoise_mse": err.mean().detach()}


__all__ = ["DiffusionConfig", "DiffusionWorldModel", "FrameProbe", "UNet", "make_scheduler"]
