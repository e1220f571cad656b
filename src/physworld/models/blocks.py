"""Shared networks: encoders (CNN, MLP, ViT) and action-conditioned predictors.

Every predictor has the same two entry points:

- ``forward(z [B, T, D], a [B, T, A]) -> [B, T, D]``: teacher forcing; output ``t`` predicts
  ``z[t+1]`` from ``z[<=t]`` and ``a[<=t]`` (causal), all positions at once.
- ``rollout(z0 [B, D], actions [B, H, A]) -> [B, H, D]``: open loop, feeding back its own
  predictions. This is what planners call thousands of times, so it is a loop over time only
  (never over the batch), and the transformer keeps a key/value cache instead of re-running
  its history.

Predictors output a residual (``z[t+1] = z[t] + f(...)``) with a zero-initialised head, so an
untrained predictor starts as "nothing moves" rather than as noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --- small pieces ---------------------------------------------------------------------------


def mlp(sizes: list[int], act: type[nn.Module] = nn.GELU, norm: bool = False) -> nn.Sequential:
    """Linear layers with ``act`` between them (optionally LayerNorm before each activation)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.LayerNorm(b), act()] if norm else [act()]
    return nn.Sequential(*layers)


def zero_(module: nn.Linear) -> nn.Linear:
    nn.init.zeros_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class Attention(nn.Module):
    """Multi-head self-attention with an optional additive mask and key/value cache."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, cache: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``x [B, n, W]`` are the newest tokens; ``cache`` holds the keys/values before them.
        Returns the output and the keys/values of all tokens seen (cache + x)."""
        b, n, w = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, w)), (k, v)


class Block(nn.Module):
    """Pre-norm transformer block; with ``cond_dim`` it is a DiT-style AdaLN-zero block.

    AdaLN-zero: the condition (here, the action) sets per-token shift/scale/gate of both
    sub-layers, and the gates start at zero so every block starts as the identity.
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, cond_dim: int | None = None):
        super().__init__()
        adaptive = cond_dim is not None
        self.norm1 = nn.LayerNorm(width, elementwise_affine=not adaptive)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=not adaptive)
        self.attn = Attention(width, heads)
        self.mlp = mlp([width, int(width * mlp_ratio), width])
        self.ada = zero_(nn.Linear(cond_dim, 6 * width)) if adaptive else None

    def forward(
        self,
        x: Tensor,
        cond: Tensor | None = None,
        mask: Tensor | None = None,
        cache: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if self.ada is None:
            h, cache = self.attn(self.norm1(x), mask, cache)
            x = x + h
            return x + self.mlp(self.norm2(x)), cache
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(cond).chunk(6, -1)
        h, cache = self.attn(modulate(self.norm1(x), shift1, scale1), mask, cache)
        x = x + gate1 * h
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2)), cache


# --- encoders: one observation -> one latent vector -------------------------------------------


def pixels_to_float(obs: Tensor) -> Tensor:
    """uint8 [0, 255] -> float roughly in [-1, 1] (models receive raw uint8 pixels)."""
    return obs.float().mul_(2 / 255).sub_(1) if obs.dtype == torch.uint8 else obs.float()


def cnn_channels(obs_shape: tuple[int, ...], width: int) -> list[int]:
    """Channels after each stride-2 layer of the CNN encoder: halve the image down to ~4x4,
    doubling channels every layer from ``width`` up to ``8 * width``."""
    layers = max(1, (min(obs_shape[1:]) // 4).bit_length() - 1)
    return [min(width * 2**i, 8 * width) for i in range(layers)]


def halvings(in_channels: int, channels: list[int]) -> list[nn.Module]:
    """Stride-2 4x4 convolutions with ReLU, one per entry of ``channels``: each halves the map
    (the downsampling the pixel encoders share)."""
    layers: list[nn.Module] = []
    for out in channels:
        layers += [nn.Conv2d(in_channels, out, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
        in_channels = out
    return layers


class CNNEncoder(nn.Module):
    """Stride-2 4x4 convolutions down to ~4x4, then an MLP head to ``dim``.

    No normalisation inside the trunk: on CPU, norm layers are memory-bound and cost more
    time than the convolutions they sit between; the head's LayerNorm is enough.
    """

    def __init__(self, obs_shape: tuple[int, ...], dim: int, width: int = 32):
        super().__init__()
        channels = cnn_channels(obs_shape, width)
        self.trunk = nn.Sequential(*halvings(obs_shape[0], channels))
        h, w = (side >> len(channels) for side in obs_shape[1:])
        self.head = mlp([channels[-1] * h * w, 2 * dim, dim], norm=True)

    def forward(self, obs: Tensor) -> Tensor:
        # channels-last activations let oneDNN skip layout reorders (a large win in bf16 on CPU)
        x = pixels_to_float(obs).contiguous(memory_format=torch.channels_last)
        return self.head(self.trunk(x).flatten(1))


class GridEncoder(nn.Module):
    """Stride-2 convolutions down to a 1/8-resolution map, then a 1x1 convolution to
    ``dim / cells`` channels; the latent is that map, flattened.

    Every latent dimension sees one region of the frame (no global head), so a critic that asks
    every dimension to vary asks every region's content -- every object -- to be in the latent.
    Through a global head, the latent may spend all its dimensions on one object (measured on
    Balls and Push: README, "JEPA critics on pixels").
    """

    def __init__(self, obs_shape: tuple[int, ...], dim: int, width: int = 32):
        super().__init__()
        channels = self.map_shape(obs_shape, dim)[0]
        self.trunk = nn.Sequential(
            *halvings(obs_shape[0], [width, 2 * width, 4 * width]), nn.Conv2d(4 * width, channels, 1)
        )

    @staticmethod
    def map_shape(obs_shape: tuple[int, ...], dim: int) -> tuple[int, int, int]:
        """The latent's ``(channels, rows, cols)`` for these frames and ``latent_dim``."""
        h, w = obs_shape[1:]
        cells = (h // 8) * (w // 8)
        if not cells:
            raise ValueError(f"the grid encoder needs frames of at least 8x8 pixels, not {h}x{w}")
        if dim % cells:
            raise ValueError(
                f"the grid encoder's latent is a {h // 8}x{w // 8} map of {obs_shape[1:]} frames: "
                f"latent_dim {dim} must be a multiple of {cells}"
            )
        return dim // cells, h // 8, w // 8

    def forward(self, obs: Tensor) -> Tensor:
        x = pixels_to_float(obs).contiguous(memory_format=torch.channels_last)
        return self.trunk(x).flatten(1)


class KeypointEncoder(nn.Module):
    """Convolutions to a map at 1/4 resolution, then a spatial soft-argmax per channel.

    Each of ``keypoints`` channels becomes where it fires (the softmax-weighted mean of its
    (x, y) grid, in [-1, 1]) and how strongly (log-sum-exp of its logits); an MLP head maps
    these to ``dim``. Positions are features by construction (the deep spatial autoencoder of
    Finn et al. 2016), where a flattened map must learn separate weights for every place an
    object can be.
    """

    def __init__(self, obs_shape: tuple[int, ...], dim: int, width: int = 32, keypoints: int = 32):
        super().__init__()
        c, h, w = obs_shape
        self.trunk = nn.Sequential(
            *halvings(c, [width, 2 * width]),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, keypoints, 1),
        )
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, h // 4), torch.linspace(-1, 1, w // 4), indexing="ij"
        )
        self.register_buffer("grid", torch.stack([xs.flatten(), ys.flatten()]))  # [2, h*w/16]
        self.log_temperature = nn.Parameter(torch.zeros(keypoints))
        self.head = mlp([3 * keypoints, 2 * dim, dim], norm=True)

    def forward(self, obs: Tensor) -> Tensor:
        x = pixels_to_float(obs).contiguous(memory_format=torch.channels_last)
        logits = self.trunk(x).flatten(2) / self.log_temperature.exp()[:, None]  # [B, K, cells]
        where = torch.softmax(logits, -1) @ self.grid.T  # [B, K, 2]
        strength = torch.logsumexp(logits, -1) - math.log(logits.shape[-1])
        return self.head(torch.cat([where.flatten(1), strength], -1))


class CNNDecoder(nn.Module):
    """Latent -> image, the CNN encoder mirrored: an MLP to a small map, then stride-2
    transposed convolutions. Outputs floats in the encoder's [-1, 1] pixel scale."""

    def __init__(self, obs_shape: tuple[int, ...], dim: int, width: int = 32):
        super().__init__()
        channels = cnn_channels(obs_shape, width)
        c, h, w = obs_shape
        self.start = (channels[-1], h >> len(channels), w >> len(channels))
        self.head = mlp([dim, 2 * dim, math.prod(self.start)], norm=True)
        layers: list[nn.Module] = []
        for a, b in zip(channels[::-1], channels[-2::-1] + [c], strict=True):
            layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
        self.trunk = nn.Sequential(*layers[:-1])

    def forward(self, z: Tensor) -> Tensor:
        return self.trunk(self.head(z).view(-1, *self.start))


class BroadcastDecoder(nn.Module):
    """Latent -> image by spatial broadcast (Watters et al. 2019): ``z`` is tiled over a map of
    ``1/fold`` of the image, beside two channels of x / y coordinates, then 3x3 convolutions and
    a pixel shuffle back to full size. Outputs floats in the encoder's [-1, 1] pixel scale.

    Why: a deconvolution decoder must spread a position coded in ``z`` through its dense head,
    so a VAE trained briefly on small objects draws their mean image (a smear where the balls
    most often were; README, "Three model families"). Here drawing an object at ``(x, y)`` is
    one local rule of the coordinates, the same in every cell.
    """

    def __init__(self, obs_shape: tuple[int, ...], dim: int, width: int = 32, fold: int = 4, depth: int = 4):
        super().__init__()
        c, h, w = obs_shape
        if h % fold or w % fold:
            raise ValueError(f"the broadcast decoder's fold {fold} does not tile {h}x{w} frames")
        self.fold, self.size = fold, (h // fold, w // fold)
        ys, xs = torch.meshgrid(*(torch.linspace(-1, 1, n) for n in self.size), indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys]), persistent=False)
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Conv2d(dim + 2 if i == 0 else 2 * width, 2 * width, 3, padding=1), nn.GELU()]
        self.net = nn.Sequential(*layers, nn.Conv2d(2 * width, c * fold * fold, 1))

    def forward(self, z: Tensor) -> Tensor:
        tiled = z[:, :, None, None].expand(-1, -1, *self.size)
        coords = self.coords.to(z.dtype).expand(len(z), -1, -1, -1)
        return F.pixel_shuffle(self.net(torch.cat([tiled, coords], 1)), self.fold)


def float_to_pixels(x: Tensor) -> Tensor:
    """The inverse of :func:`pixels_to_float`: [-1, 1] floats -> uint8."""
    return ((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


class MLPEncoder(nn.Module):
    """State vectors -> latent. Inputs are standardised with statistics fitted by ``calibrate``."""

    def __init__(self, in_dim: int, dim: int, width: int = 256, depth: int = 2):
        super().__init__()
        self.register_buffer("loc", torch.zeros(in_dim))
        self.register_buffer("scale", torch.ones(in_dim))
        self.net = mlp([in_dim] + [width] * depth + [dim], norm=True)

    @torch.no_grad()
    def calibrate(self, obs: Tensor) -> None:
        flat = obs.reshape(-1, obs.shape[-1]).float()
        self.loc.copy_(flat.mean(0))
        self.scale.copy_(flat.std(0).clamp_min(1e-3))

    def forward(self, obs: Tensor) -> Tensor:
        return self.net((obs.float() - self.loc) / self.scale)


class ViTEncoder(nn.Module):
    """A small ViT: patch embedding, a CLS token, pre-norm blocks, an MLP head on the CLS."""

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        dim: int,
        patch: int = 8,
        width: int = 192,
        depth: int = 4,
        heads: int = 3,
    ):
        super().__init__()
        c, h, w = obs_shape
        if h % patch or w % patch:
            raise ValueError(f"image {h}x{w} is not a multiple of the ViT patch size {patch}")
        self.patchify = nn.Conv2d(c, width, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.randn(1, (h // patch) * (w // patch) + 1, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = mlp([width, 2 * dim, dim], norm=True)

    def forward(self, obs: Tensor) -> Tensor:
        x = self.patchify(pixels_to_float(obs)).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.pos
        for block in self.blocks:
            x, _ = block(x)
        return self.head(self.norm(x[:, 0]))


# --- predictors: (latent history, action) -> next latent --------------------------------------


def k_step_windows(x: Tensor, k: int) -> Tensor:
    """Every run of ``k`` consecutive steps of ``x [B, T, ...]`` as its own row: ``[B * (T-k+1), k, ...]``
    (what a k-step rollout from each step predicts, and the targets it is scored against)."""
    return x.unfold(1, k, 1).movedim(-1, 2).flatten(0, 1)


def check_horizon(horizon: int, steps: int) -> None:
    if not 1 <= horizon <= steps:
        raise ValueError(f"a forecast horizon of {horizon} steps does not fit a clip of {steps} steps")


def forecast_each(rollout: Callable[[Tensor, Tensor], Tensor], z: Tensor, actions: Tensor, horizon: int) -> Tensor:
    """``rollout(z0, actions)`` run ``horizon`` steps from every state ``z[:, s]`` that has them:
    the last prediction of each, ``[B, T+1-horizon, ...]`` (a forecast with no memory but the state)."""
    check_horizon(horizon, actions.shape[1])
    starts = z[:, : actions.shape[1] - horizon + 1]
    last = rollout(starts.flatten(0, 1), k_step_windows(actions, horizon))[:, -1]
    return last.unflatten(0, starts.shape[:2])


class Stateful(nn.Module):
    """A predictor that carries a state along the latents it reads (a GRU's hidden state, a
    transformer's key/value cache): ``_start(z0)`` makes it, ``_run(z, a, state)`` advances it
    by ``z.shape[1]`` steps and returns the predictions and the new state."""

    def _start(self, z0: Tensor) -> Any:
        raise NotImplementedError

    def _run(self, z: Tensor, a: Tensor, state: Any) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def forward(self, z: Tensor, a: Tensor) -> Tensor:
        """Teacher forced: the prediction of ``z[t+1]`` from ``z[:t+1]``, for every ``t``."""
        return self._run(z, a, self._start(z[:, 0]))[0]

    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        return self._continue(z0[:, None], actions, self._start(z0))

    def _continue(self, z: Tensor, actions: Tensor, state: Any) -> Tensor:
        """Open loop from the newest latent ``z [B, 1, D]`` and ``state``, one step per action."""
        out = []
        for t in range(actions.shape[1]):
            z, state = self._run(z, actions[:, t : t + 1], state)
            out.append(z)
        return torch.cat(out, 1)

    def forecast(self, z: Tensor, actions: Tensor, horizon: int) -> Tensor:
        """``z [B, T+1, D]``, ``actions [B, T, A]`` -> the prediction of every ``z[t]`` (``t >=
        horizon``) made from ``z[:t-horizon+1]``, seen, and the ``horizon`` actions after it,
        imagined: ``[B, T+1-horizon, D]``. The state carries what the seen latents showed (a
        ball that went behind a screen), which a rollout from one latent has forgotten. One
        teacher-forced pass: each forecast branches off the state at its step (``_run`` never
        changes a state in place)."""
        check_horizon(horizon, actions.shape[1])
        out, state = [], self._start(z[:, 0])
        for s in range(actions.shape[1] - horizon + 1):
            ahead, state = self._run(z[:, s : s + 1], actions[:, s : s + 1], state)  # z[s+1]
            if horizon > 1:
                ahead = self._continue(ahead, actions[:, s + 1 : s + horizon], state)[:, -1:]
            out.append(ahead[:, 0])
        return torch.stack(out, 1)


class TransformerPredictor(Stateful):
    """A small causal transformer over the last ``history`` latents, AdaLN-zero on the action.

    Attention is a sliding causal window: query ``i`` sees keys ``j`` with
    ``0 <= i - j < history``, plus a learned per-layer, per-head bias on the offset ``i - j``.
    Positions are relative, so a window slid along a long rollout looks exactly like the windows
    seen in training. Every layer sees ``history`` positions of the layer below (as in Mistral),
    so the receptive field is ``depth * (history - 1) + 1`` latents, and the cached rollout
    computes exactly what teacher forcing computes. ``history=1`` makes it history-free (each
    step sees only the current latent): the fast path.
    """

    def __init__(
        self,
        dim: int,
        action_dim: int,
        width: int = 128,
        depth: int = 2,
        heads: int = 4,
        history: int = 4,
        mlp_ratio: float = 2.0,
    ):
        super().__init__()
        cond = max(32, width // 2)
        self.history = history
        self.embed = nn.Linear(dim, width)
        self.action = mlp([action_dim, cond, cond], act=nn.SiLU)
        self.blocks = nn.ModuleList(
            Block(width, heads, mlp_ratio, cond_dim=cond) for _ in range(depth)
        )
        self.offset_bias = nn.Parameter(torch.zeros(depth, heads, history))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False)
        self.final_ada = zero_(nn.Linear(cond, 2 * width))
        self.head = zero_(nn.Linear(width, dim))

    def masks(self, n_q: int, n_k: int, dtype: torch.dtype) -> Tensor:
        """Additive attention masks ``[depth, heads, n_q, n_k]`` for the newest ``n_q`` of ``n_k``."""
        device = self.offset_bias.device
        offset = torch.arange(n_k - n_q, n_k, device=device)[:, None] - torch.arange(
            n_k, device=device
        )
        bias = self.offset_bias[:, :, offset.clamp(0, self.history - 1)]
        return bias.masked_fill((offset < 0) | (offset >= self.history), float("-inf")).to(dtype)

    def _run(self, z: Tensor, a: Tensor, caches: list | None) -> tuple[Tensor, list]:
        """Advance by ``z.shape[1]`` tokens after those in ``caches``; return outputs and caches."""
        cond = F.silu(self.action(a))
        x, new = self.embed(z), []
        n_k = z.shape[1] + (0 if caches is None else caches[0][0].shape[2])
        masks = self.masks(z.shape[1], n_k, x.dtype)
        for i, block in enumerate(self.blocks):
            x, (k, v) = block(x, cond, masks[i], None if caches is None else caches[i])
            keep = self.history - 1  # what the next query can still see
            new.append((k[:, :, k.shape[2] - keep :], v[:, :, v.shape[2] - keep :]))
        shift, scale = self.final_ada(cond).chunk(2, -1)
        return z + self.head(modulate(self.final_norm(x), shift, scale)), new

    def _start(self, z0: Tensor) -> None:
        return None  # no cache: nothing seen yet


class HistoryFree(nn.Module):
    """A predictor whose step ``forward(z[t], a[t]) -> z[t+1]`` sees the current latent alone."""

    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        z, out = z0, []
        for t in range(actions.shape[1]):
            z = self(z, actions[:, t])
            out.append(z)
        return torch.stack(out, 1)

    def forecast(self, z: Tensor, actions: Tensor, horizon: int) -> Tensor:
        """As :meth:`Stateful.forecast`; without a state, each forecast starts from one latent."""
        return forecast_each(self.rollout, z, actions, horizon)


class MLPPredictor(HistoryFree):
    """History-free: ``z[t+1] = z[t] + MLP(z[t], a[t])``. The cheapest rollout there is."""

    def __init__(self, dim: int, action_dim: int, width: int = 256, depth: int = 2):
        super().__init__()
        self.net = mlp([dim + action_dim] + [width] * depth + [dim], norm=True)
        zero_(self.net[-1])

    def forward(self, z: Tensor, a: Tensor) -> Tensor:
        return z + self.net(torch.cat([z, a], -1))


class ConvPredictor(HistoryFree):
    """History-free, for a latent map: ``z[t+1] = z[t] + CNN(z[t], a[t])`` with 3x3 convolutions.

    The same local rule everywhere: an object's motion learnt in one region of the frame applies in
    every other, and walls are where the padding starts. An MLP over the flattened map has to
    learn each cell's motion separately; on pixel Balls it learnt to leave every ball where it was.
    """

    def __init__(self, map_shape: tuple[int, int, int], action_dim: int, width: int = 128, depth: int = 3):
        super().__init__()
        self.map_shape = map_shape
        channels = map_shape[0]
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Conv2d(channels + action_dim if i == 0 else width, width, 3, padding=1), nn.GELU()]
        self.net = nn.Sequential(*layers, nn.Conv2d(width, channels, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, z: Tensor, a: Tensor) -> Tensor:
        lead, (_, h, w) = z.shape[:-1], self.map_shape
        x = z.reshape(-1, *self.map_shape)
        act = a.reshape(-1, a.shape[-1], 1, 1).expand(-1, -1, h, w).to(x.dtype)
        return (x + self.net(torch.cat([x, act], 1))).reshape(*lead, -1)


class GRUPredictor(Stateful):
    """A GRU whose hidden state (initialised from the first latent) carries the history."""

    def __init__(self, dim: int, action_dim: int, width: int = 256):
        super().__init__()
        self.init = nn.Linear(dim, width)
        self.gru = nn.GRU(dim + action_dim, width, batch_first=True)
        self.head = zero_(nn.Linear(width, dim))

    def _start(self, z0: Tensor) -> Tensor:
        return torch.tanh(self.init(z0))[None]

    def _run(self, z: Tensor, a: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        y, h = self.gru(torch.cat([z, a], -1), h)
        return z + self.head(y), h


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "Attention",
    "Block",
    "CNNDecoder",
    "CNNEncoder",
    "GRUPredictor",
    "KeypointEncoder",
    "MLPEncoder",
    "MLPPredictor",
    "TransformerPredictor",
    "ViTEncoder",
    "count_params",
    "k_step_windows",
    "mlp",
]
