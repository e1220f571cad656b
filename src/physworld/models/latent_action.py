"""Latent actions (Genie, small): learn a handful of discrete actions from unlabelled video.

Two networks trained together on frames only -- the world's true actions are never read:

- the **latent action model** (:class:`ActionEncoder`) looks at the frame history *and the next
  frame* and names the change between them with one of ``codes`` discrete latent actions
  (vector quantisation from ``vector-quantize-pytorch``: EMA codebook, k-means initialisation,
  dead codes replaced by batch vectors so the codebook cannot collapse to one or two codes);
- the **dynamics** (:class:`Dynamics`) predicts the next frame from the history and the latent
  action alone. The codebook is a 3-bit bottleneck, so the cheapest thing for it to carry is
  what the history cannot predict: the player's choice.

**Why this decoder (not a MaskGIT or diffusion head).** The worlds are flat-shaded 64x64
scenes in which a few objects move a few pixels per step. The dynamics is a CDNA-style
transformation decoder (Finn et al. 2016): it predicts a few image-wide shift kernels and a
per-pixel mask choosing between the newest frame, its shifted copies and a generated residual.
Moving pixels instead of painting them keeps sprites sharp and colours exact, starts as
"nothing moves", and turns "which way did the player go" into a handful of numbers the latent
action can set -- so the codebook learns in minutes on 2 CPU cores, and a frame costs one
forward pass of a few milliseconds (play runs far above 10 frames per second). A sampling head
would pay tens of passes per frame for multimodality that the latent action already resolves.
The loss is a per-pixel MSE that up-weights the pixels that change (``change_weight``),
otherwise the moving character is a rounding error beside the static background.

**The WorldModel contract.** The latent state is the frame history itself: ``z`` is
``[B, history * C * H * W]`` floats in [0, 1] (oldest frame first), so a rollout is Markov in
``z``. ``encode(obs)`` starts a history from one frame (repeated: "at rest");
``encode_history(frames)`` from several. ``decode(z)`` is the newest frame as uint8
``[B, C, H, W]``. Actions come two ways:

- ``predict_latent(z, codes)`` takes latent actions (indices ``[B, H]`` or one-hots / mixtures
  ``[B, H, codes]``) -- what play and the Genie metrics use;
- ``predict(z, actions)`` takes the *world's* actions ``[B, H, action_dim]``, as planners and the
  dream environment give them: each is classified (argmax for choice worlds such as the
  Platformer, per-dimension sign bins otherwise; :func:`action_classes`) and mapped to a latent
  action through the lookup fitted by :func:`physworld.eval.latent_action.fit_action_lookup`
  (Genie's protocol: a few hundred labelled transitions). Before that fit it raises.
"""

from __future__ import annotations

import functools
import importlib
import math
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from vector_quantize_pytorch import VectorQuantize

from physworld.models.base import Data, ModelConfig, WorldModel, register_model
from physworld.models.blocks import zero_
from physworld.models.diffusion import FrameProbe  # the probe for pixel-history latents
from physworld.models.probe import StateProbe


@dataclass
class LatentActionConfig(ModelConfig):
    """Latent-action model hyper-parameters (data-derived fields are filled by ``train``)."""

    family: str = "latent-action"
    codes: int = 8  # latent actions in the codebook
    code_dim: int = 8  # size of a codebook vector (compared by cosine similarity)
    history: int = 2  # frames of context the dynamics sees (2: enough for velocities)
    width: int = 48  # channels of the dynamics' trunk (the action encoder uses 4/3 of it)
    blocks: int = 2  # action-conditioned residual blocks in the dynamics' trunk
    kernels: int = 3  # shift kernels the dynamics predicts per frame (objects moving differently)
    kernel_size: int = 17  # span of a shift kernel in pixels (17: moves of up to 8 px per step)
    commitment: float = 0.25  # VQ commitment loss weight
    codebook_decay: float = 0.9  # EMA decay of the codebook
    dead_code_threshold: float = 1.0  # EMA usage below which a code is re-seeded from the batch
    change_weight: float = 30.0  # extra loss weight on pixels that change between frames
    # First steps feed the dynamics unquantised action vectors. 400 (was 200): closing the
    # bottleneck at 200 collapsed seed 1 -- the commitment pull snapped the encoder onto its
    # codes (commitment loss ~1e-5) before the dynamics used the move, so the codes stopped
    # carrying it. Saved configs keep their own value.
    warmup_steps: int = 400
    sharp: bool = True  # rollouts move whole pixels from one source each (see Dynamics.forward)
    # Set by fit_action_lookup (world action classes -> latent codes); empty until then.
    action_names: Annotated[list[str], Data] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.obs_kind != "pixels":
            raise ValueError(
                "the latent-action model learns from pixels; collect with --obs pixels"
            )
        if self.codes < 2:
            raise ValueError(f"codes must be at least 2, got {self.codes}")
        if self.history < 1:
            raise ValueError(f"history must be at least 1, got {self.history}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {self.kernel_size}")
        c, h, w = self.obs_shape
        if h % 16 or w % 16:
            raise ValueError(f"image size {h}x{w} must be a multiple of 16")


# --- which true action is this? (for the lookup and the probe) --------------------------------


@functools.cache
def world_action_names(world: str) -> tuple[str, ...] | None:
    """The move names of a choice world (e.g. the Platformer's), or None for continuous worlds."""
    import gymnasium as gym

    import physworld.worlds  # noqa: F401  (registers the worlds)

    if world not in gym.registry:
        return None
    entry = gym.spec(world).entry_point
    if not isinstance(entry, str):
        return getattr(entry, "ACTION_NAMES", None)
    module, _, name = entry.partition(":")
    return getattr(getattr(importlib.import_module(module), name), "ACTION_NAMES", None)


def action_classes(
    actions: Tensor | np.ndarray, low: list[float], high: list[float], choice: bool
) -> Tensor:
    """World actions ``[..., A]`` -> class indices ``[...]``.

    ``choice`` worlds (one score per move) take the argmax. Continuous actions are binned per
    dimension into low / middle / high thirds of their range, giving ``3**A`` classes.
    """
    a = torch.as_tensor(actions).float()
    if choice:
        return a.argmax(-1)
    lo = torch.as_tensor(low, dtype=a.dtype) if low else torch.full(a.shape[-1:], -1.0)
    hi = torch.as_tensor(high, dtype=a.dtype) if high else torch.full(a.shape[-1:], 1.0)
    third = ((a - lo) / (hi - lo).clamp_min(1e-8) * 3).floor().clamp(0, 2).long()
    weights = 3 ** torch.arange(a.shape[-1])
    return (third * weights).sum(-1)


def class_names(action_dim: int, choice_names: tuple[str, ...] | None) -> list[str]:
    """Names of the classes :func:`action_classes` returns (e.g. ``"+-"``: x high, y low)."""
    if choice_names is not None:
        return list(choice_names)
    return [
        "".join("-0+"[(k // 3**d) % 3] for d in range(action_dim)) for k in range(3**action_dim)
    ]


# --- the networks -----------------------------------------------------------------------------


def to_unit(obs: Tensor) -> Tensor:
    """uint8 pixels -> float in [0, 1] (floats pass through)."""
    return obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()


FOLD = 4  # pixels are folded 4x4 into channels: every convolution runs at 1/4 resolution


class FiLMBlock(nn.Module):
    """Residual 3x3 conv block whose features are scaled and shifted by the action.

    The second convolution starts at zero, so each block starts as the identity.
    """

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = zero_(nn.Conv2d(channels, channels, 3, padding=1))  # type: ignore[arg-type]
        self.film = nn.Linear(cond_dim, 2 * channels)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        scale, shift = self.film(cond)[..., None, None].chunk(2, 1)
        h = self.conv1(F.silu(x)) * (1 + scale) + shift
        return x + self.conv2(F.silu(h))


def shift_kernels(image: Tensor, kernels: Tensor) -> Tensor:
    """Convolve each image ``[B, C, H, W]`` with its own separable kernels ``[B, N, 2, K]``.

    Kernel ``n`` is the outer product of a vertical and a horizontal 1-D kernel (each a softmax
    over ``K`` offsets), so a pure shift costs 2K rather than K² multiply-adds per pixel.
    Returns ``[B, N, C, H, W]``; the border is extended (replicate), so walls slide in, not black.
    """
    b, c, h, w = image.shape
    n, k = kernels.shape[1], kernels.shape[-1]
    p = k // 2
    x = F.pad(image, (p, p, p, p), mode="replicate")[:, None].expand(b, n, c, h + 2 * p, w + 2 * p)
    x = x.reshape(1, b * n * c, h + 2 * p, w + 2 * p)
    per = kernels[:, :, None].expand(b, n, c, 2, k).reshape(b * n * c, 2, k)
    x = F.conv2d(x, per[:, 0, :, None, None].transpose(1, 2), groups=b * n * c)  # vertical
    x = F.conv2d(x, per[:, 1, None, None, :], groups=b * n * c)  # horizontal
    return x.view(b, n, c, h, w)


def _hard(p: Tensor, dim: int) -> Tensor:
    """One-hot of the argmax of ``p`` along ``dim``."""
    return F.one_hot(p.argmax(dim), p.shape[dim]).movedim(-1, dim).to(p.dtype)


class Dynamics(nn.Module):
    """Frame history + action vector -> next frame, by moving what is already there.

    CDNA (Finn, Goodfellow & Levine 2016): the network predicts ``kernels`` shift kernels for the
    whole image (from pooled features and the action: "the character moves 3 px left") and a
    per-pixel mask that picks, for every pixel, the newest frame as it is, one of its shifted
    copies, or a generated residual image (for what no shift explains). Shifting pixels keeps
    sprites sharp and their colours exact, and "which way" is one small output the latent action
    can set -- which is what lets the codebook learn in minutes.
    """

    def __init__(
        self,
        history: int,
        channels: int,
        cond_dim: int,
        width: int,
        blocks: int,
        kernels: int,
        kernel_size: int,
    ):
        super().__init__()
        self.kernels, self.kernel_size = kernels, kernel_size
        self.cond = nn.Sequential(nn.Linear(cond_dim, 64), nn.SiLU(), nn.Linear(64, 64))
        self.stem = nn.Conv2d(FOLD * FOLD * history * channels, width, 3, padding=1)
        self.blocks = nn.ModuleList(FiLMBlock(width, 64) for _ in range(blocks))
        self.kernel_head = nn.Sequential(
            nn.Linear(2 * width + 64, 256),
            nn.SiLU(),
            zero_(nn.Linear(256, kernels * 2 * kernel_size)),
        )
        self.mask_head = zero_(nn.Conv2d(width, FOLD * FOLD * (kernels + 2), 3, padding=1))  # type: ignore[arg-type]
        with torch.no_grad():  # start by mostly keeping the newest frame as it is
            self.mask_head.bias.view(kernels + 2, FOLD * FOLD)[0] = 2.0
        self.pixel_head = zero_(nn.Conv2d(width, FOLD * FOLD * channels, 3, padding=1))  # type: ignore[arg-type]

    def forward(self, frames: Tensor, action: Tensor, sharp: bool = False) -> Tensor:
        """``frames [B, K, C, H, W]`` in [0, 1], ``action [B, cond_dim]`` -> next frame ``[B, C, H, W]``.

        ``sharp`` (rollouts, not training): each kernel becomes its most likely whole-pixel shift
        and each pixel takes its most likely source, so a long rollout copies pixels instead of
        averaging them and no blur builds up (trained soft, the mask and kernels are near
        one-hot where it matters; straight-through training of the hard choice diverged).
        """
        b = frames.shape[0]
        cond = self.cond(action)
        h = self.stem(F.pixel_unshuffle(frames.flatten(1, 2) * 2 - 1, FOLD))
        for block in self.blocks:
            h = block(h, cond)
        h = F.silu(h)
        pooled = torch.cat([h.amax((2, 3)), h.mean((2, 3)), cond], 1)
        kernels = self.kernel_head(pooled).view(b, self.kernels, 2, self.kernel_size).softmax(-1)
        mask = F.pixel_shuffle(self.mask_head(h), FOLD).softmax(1)  # [B, kernels + 2, H, W]
        if sharp:
            kernels = _hard(kernels, -1)
            mask = _hard(mask, 1)
        newest = frames[:, -1]
        generated = newest + F.pixel_shuffle(self.pixel_head(h), FOLD)
        candidates = torch.cat(
            [newest[:, None], shift_kernels(newest, kernels), generated[:, None]], 1
        )
        return (mask[:, :, None] * candidates).sum(1)


class ActionEncoder(nn.Module):
    """The latent action model's encoder: (history, next frame) -> one continuous action vector.

    It sees the frames and the difference ``next - newest``; after two convolutions the features
    are max- and mean-pooled over the image, so a move is recognised wherever it happens.
    The output is batch-normalised (no affine): the quantiser compares directions (cosine), and
    centring keeps those directions apart from the first step.
    """

    def __init__(self, history: int, channels: int, width: int, out_dim: int):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(FOLD * FOLD * (history + 2) * channels, width, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.SiLU(),
        )
        self.head = nn.Sequential(nn.Linear(2 * width, 128), nn.SiLU(), nn.Linear(128, out_dim))
        # Centre and scale each output over the batch: an untrained encoder emits nearly one
        # direction for every input, which would put every vector on the same code.
        self.norm = nn.BatchNorm1d(out_dim, affine=False)

    def forward(self, frames: Tensor, nxt: Tensor) -> Tensor:
        x = torch.cat([frames.flatten(1, 2), nxt, (nxt - frames[:, -1]) * 4], 1) * 2 - 1
        h = self.trunk(F.pixel_unshuffle(x, FOLD))
        return self.norm(self.head(torch.cat([h.amax((2, 3)), h.mean((2, 3))], 1)))


# --- the model --------------------------------------------------------------------------------


@register_model("latent-action")
class LatentAction(WorldModel):
    """Genie-style latent action model + pixel dynamics; see the module docstring."""

    config_class = LatentActionConfig
    config: LatentActionConfig

    def __init__(self, config: LatentActionConfig | dict):
        super().__init__(config)
        c = self.config
        channels = c.obs_shape[0]
        self.action_encoder = ActionEncoder(
            c.history, channels, max(8, 4 * c.width // 3), c.code_dim
        )
        self.quantizer = VectorQuantize(
            dim=c.code_dim,
            codebook_size=c.codes,
            decay=c.codebook_decay,
            commitment_weight=c.commitment,
            use_cosine_sim=True,  # directions, not lengths: codes cannot hide near the origin
            kmeans_init=True,
            threshold_ema_dead_code=c.dead_code_threshold,
        )
        self.dynamics = Dynamics(
            c.history, channels, c.code_dim, c.width, c.blocks, c.kernels, c.kernel_size
        )
        # The lookup world-action class -> latent code (and back), fitted from labelled data.
        n = len(c.action_names)
        self.register_buffer("action_to_code", torch.full((n,), -1, dtype=torch.long))
        self.register_buffer("code_to_action", torch.full((c.codes,), -1, dtype=torch.long))
        if c.state_dim and not c.probe_input:
            self.attach_probe(c.history * math.prod(c.obs_shape))

    def attach_probe(self, latent_size: int) -> StateProbe:
        """The state probe reads the newest frame of the history with a small CNN (as diffusion's)."""
        c = self.config
        if not c.state_dim:
            raise ValueError("this model was built without a state_dim: there is no state to probe")
        c.probe_input = latent_size
        self.probe = FrameProbe(latent_size, c.obs_shape, c.state_dim, c.probe_hidden, 8)
        return self.probe

    # --- frames <-> latent state --------------------------------------------------------------
    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return tuple(self.config.obs_shape)  # type: ignore[return-value]

    def _check_frames(self, obs: Tensor) -> None:
        if tuple(obs.shape[-3:]) != self.frame_shape:
            raise ValueError(
                f"frames of shape {tuple(obs.shape[-3:])} do not match the model's {self.frame_shape}"
            )

    def encode(self, obs: Tensor) -> Tensor:
        """One frame ``[..., C, H, W]`` -> a history at rest ``[..., history * C * H * W]``."""
        self._check_frames(obs)
        x = to_unit(obs).unsqueeze(-4)
        return x.expand(*x.shape[:-4], self.config.history, *self.frame_shape).flatten(-4)

    def encode_history(self, frames: Tensor) -> Tensor:
        """Frames ``[B, T, C, H, W]`` (oldest first) -> the latent state after the last one."""
        self._check_frames(frames)
        k = self.config.history
        if frames.shape[1] < k:  # too short: pad with the first frame (at rest before the clip)
            frames = torch.cat(
                [frames[:, :1].expand(-1, k - frames.shape[1], -1, -1, -1), frames], 1
            )
        return to_unit(frames[:, -k:]).flatten(1)

    def frames(self, z: Tensor) -> Tensor:
        """Latent ``[B, D]`` -> its frame history ``[B, history, C, H, W]`` in [0, 1]."""
        return z.reshape(-1, self.config.history, *self.frame_shape)

    def decode(self, z: Tensor) -> Tensor:
        """Latent ``[B, D]`` -> the newest frame as an observation (uint8 ``[B, C, H, W]``)."""
        return (self.frames(z)[:, -1].clamp(0, 1) * 255).round().to(torch.uint8)

    # --- latent actions -----------------------------------------------------------------------
    @property
    def codebook(self) -> Tensor:
        """``[codes, code_dim]``: the latent action vectors the dynamics is conditioned on."""
        return self.quantizer.codebook

    def code_vectors(self, codes: Tensor) -> Tensor:
        """Indices ``[...]`` (long) or weights ``[..., codes]`` -> action vectors ``[..., code_dim]``."""
        if codes.dtype in (torch.int32, torch.int64):
            if codes.numel() and (codes.min() < 0 or codes.max() >= self.config.codes):
                raise ValueError(
                    f"latent action indices must be in [0, {self.config.codes}), got {codes.tolist()}"
                )
            return self.codebook[codes]
        if codes.shape[-1] != self.config.codes:
            raise ValueError(
                f"latent actions need {self.config.codes} weights, got {codes.shape[-1]}"
            )
        return codes.to(self.codebook.dtype) @ self.codebook

    def action_vectors(self, obs: Tensor) -> Tensor:
        """The action encoder's output before quantisation, ``[B, T, code_dim]``, for a clip ``[B, T+1, ...]``."""
        x = to_unit(obs)
        b, t = x.shape[0], x.shape[1] - 1
        e = self.action_encoder(self._histories(x).flatten(0, 1), x[:, 1:].flatten(0, 1))
        return e.view(b, t, -1)

    @torch.no_grad()
    def infer_actions(self, obs: Tensor) -> Tensor:
        """Latent action indices ``[B, T]`` explaining a clip ``obs [B, T+1, C, H, W]``."""
        e = F.normalize(self.action_vectors(obs), dim=-1)  # nearest code by cosine similarity,
        return (e @ F.normalize(self.codebook, dim=-1).T).argmax(-1)  # without the VQ's EMA update

    def _histories(self, x: Tensor) -> Tensor:
        """Clip ``[B, T+1, ...]`` -> the history before each transition ``[B, T, K, ...]`` (padded at the start)."""
        k = self.config.history
        padded = torch.cat([x[:, :1].expand(-1, k - 1, -1, -1, -1), x], 1) if k > 1 else x
        return padded.unfold(1, k, 1)[:, : x.shape[1] - 1].permute(0, 1, 5, 2, 3, 4)

    def step(self, z: Tensor, vectors: Tensor) -> Tensor:
        """One step: latent ``[B, D]`` + action vectors ``[B, code_dim]`` -> next latent."""
        hist = self.frames(z)
        nxt = self.dynamics(hist, vectors, sharp=self.config.sharp).clamp(0, 1)
        return torch.cat([hist[:, 1:], nxt[:, None]], 1).flatten(1)

    def predict_latent(self, z: Tensor, codes: Tensor) -> Tensor:
        """Roll out latent actions: indices ``[B, H]`` or weights ``[B, H, codes]`` -> ``[B, H, D]``."""
        vectors = self.code_vectors(codes)
        out = []
        for t in range(vectors.shape[1]):
            z = self.step(z, vectors[:, t])
            out.append(z)
        return torch.stack(out, 1)

    # --- world actions through the fitted lookup ----------------------------------------------
    @property
    def choice_names(self) -> tuple[str, ...] | None:
        return world_action_names(self.config.world)

    def world_classes(self, actions: Tensor) -> Tensor:
        c = self.config
        return action_classes(actions, c.action_low, c.action_high, self.choice_names is not None)

    def set_lookup(self, names: list[str], action_to_code: Tensor, code_to_action: Tensor) -> None:
        """Install a fitted lookup (called by ``fit_action_lookup``; saved with the weights)."""
        self.config.action_names = list(names)
        self.action_to_code = action_to_code.to(self.code_to_action.device, torch.long).clone()
        self.code_to_action.copy_(code_to_action)

    def world_to_codes(self, actions: Tensor) -> Tensor:
        """World actions ``[..., action_dim]`` -> latent action indices ``[...]``."""
        self.check_actions(actions)
        if not self.config.action_names:
            raise RuntimeError(
                "this latent-action model has no action lookup yet: fit one with "
                "physworld.eval.latent_action.fit_action_lookup(model, windows), or drive it "
                "with latent actions through predict_latent"
            )
        codes = self.action_to_code[
            self.world_classes(actions.cpu()).to(self.action_to_code.device)
        ]
        return codes.clamp_min(0)  # a class never seen in the fit falls back to code 0

    def predict(self, z: Tensor, actions: Tensor) -> Tensor:
        """World actions ``[B, H, action_dim]`` mapped through the fitted lookup, then rolled out."""
        return self.predict_latent(z, self.world_to_codes(actions))

    @torch.no_grad()
    def surprise(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Per-step pixel MSE ``[B, T]`` of the open-loop rollout (world actions) against the clip."""
        pred = self.predict(self.encode(obs[:, 0]), actions)
        b, t = pred.shape[:2]
        frames = self.frames(pred.flatten(0, 1))[:, -1].view(b, t, *self.frame_shape)
        return (frames - to_unit(obs[:, 1:])).pow(2).flatten(2).mean(-1)

    # --- training -----------------------------------------------------------------------------
    def loss(self, batch: dict[str, Tensor], step: int = 0) -> dict[str, Tensor]:
        """Re-draw every next frame of the clip from the history and its inferred latent action.

        Only ``batch["obs"]`` is read: the true actions never reach the model.

        For the first ``warmup_steps`` steps the dynamics gets the action encoder's (normalised)
        output itself, while the codebook follows it by EMA: both networks learn what a move
        looks like before the 3-bit bottleneck closes, so the codebook starts on clusters that
        mean something. Predictions are one step ahead from the true history (teacher forcing):
        on this budget, training on the model's own rollouts learned more slowly and drifted no
        less; the sharp rollouts (``sharp``) are what keeps play from smearing.

        Diagnostics: ``codes_used`` and ``perplexity`` of this batch's codes, ``perplexity_ema``
        of the codebook's running usage (what the dead-code reset acts on), ``code_distance``
        (squared distance of the normalised encoder output to its code), ``psnr``.
        """
        c = self.config
        x = to_unit(batch["obs"])  # [B, T+1, C, H, W]
        self._check_frames(x)
        hist, nxt = self._histories(x).flatten(0, 1), x[:, 1:].flatten(0, 1)
        e = self.action_encoder(hist, nxt)
        warmup = self.training and step < c.warmup_steps
        q, idx, commit = self.quantizer(e.detach() if warmup else e)  # the codebook tracks e
        pred = self.dynamics(hist, F.normalize(e, dim=-1) if warmup else q)

        change = (nxt - hist[:, -1]).abs().amax(1, keepdim=True) > 0.02
        weight = 1 + c.change_weight * F.max_pool2d(change.float(), 3, 1, 1)
        err = (pred - nxt).pow(2)
        recon = (err * weight).mean() / weight.mean()
        mse = err.mean().detach()
        # How far the encoder sits from its codes: ~0 means it only emits the code vectors
        # themselves (the collapse the commitment pull caused at seed 1), whatever the input.
        code_distance = (F.normalize(e.detach(), dim=-1) - q.detach()).pow(2).sum(-1).mean()

        counts = torch.bincount(idx.flatten(), minlength=c.codes).float()
        ema = self.quantizer._codebook.cluster_size.flatten().detach()  # what dead-code reset reads
        return {
            "loss": recon + commit.sum(),
            "recon": recon.detach(),
            "commit": commit.sum().detach(),
            "code_distance": code_distance,
            "psnr": -10 * torch.log10(mse.clamp_min(1e-10)),
            "codes_used": (counts > 0).float().sum(),
            "perplexity": perplexity(counts),
            "perplexity_ema": perplexity(ema),
        }


def perplexity(counts: Tensor) -> Tensor:
    """exp(entropy) of a code histogram: 1 if one code is used, ``codes`` if all equally."""
    p = counts / counts.sum().clamp_min(1e-8)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())


def psnr(pred: Tensor, true: Tensor) -> Tensor:
    """Per-image PSNR (dB) of frames in [0, 1] (or uint8), ``[..., C, H, W]`` -> ``[...]``."""
    mse = (to_unit(pred) - to_unit(true)).pow(2).flatten(-3).mean(-1)
    return -10 * torch.log10(mse.clamp_min(1e-10))


__all__ = [
    "LatentAction",
    "LatentActionConfig",
    "action_classes",
    "class_names",
    "perplexity",
    "psnr",
    "world_action_names",
]
