"""VAE + MDN-RNN (Ha & Schmidhuber, "World Models", 2018), trained by the one training loop.

- **V**: a VAE compresses one observation into ``z`` (``latent_dim``, 32 by default): a CNN for
  pixels (the shared :class:`~physworld.models.blocks.CNNEncoder`; the decoder is a spatial
  broadcast, :class:`~physworld.models.blocks.BroadcastDecoder`: with the paper's deconvolutions
  the VAE drew the mean image of pixel Balls after 1,000 steps, README "Three model families"),
  an MLP for state vectors. Loss: reconstruction (Gaussian log-likelihood with a fixed
  ``obs_sigma``, i.e. a scaled sum of squares) + KL to N(0, I) with *free bits* (no pressure
  below ``free_bits`` nats per dimension, so the latent is not squeezed empty).
- **M**: an LSTM reads ``[z_t, a_t]``; a mixture-density head on its output gives
  ``p(z_{t+1}) = sum_k pi_k N(mu_k, sigma_k)`` over the whole latent (``mixtures`` components, each
  a diagonal Gaussian). Why one mixture over the vector rather than one per dimension (as in the
  paper): a bounce moves several latent dimensions at once, and independent per-dimension
  mixtures would sample them incoherently. Loss: negative log-likelihood by log-sum-exp.

**Two stages, one loop.** ``loss(batch, step)`` trains the VAE while ``step < vae_steps`` and then
the MDN-RNN on the frozen VAE's encodings (means) of the same windows; the stage is a pure
function of the global step the loop already passes, so resuming, logging and checkpoints need
nothing new: ``physworld train --model rnn --steps 3000 --rnn.vae-steps 1500``. (Each stage
leaves the other's weights without gradients, so DDP needs ``find_unused_parameters``; the
loop does not set it, so train this family on one process.)

**The contract.** The latent state is ``[z, h, c]``: the VAE code *and* the LSTM's memory, so
``predict`` is Markov in it and the dream environment, planners and the CMA-ES controller (which
reads ``[z, h]``, as in the paper) carry the memory for free. ``encode(obs)`` is the VAE mean
with a fresh memory (``h = c = 0``); :meth:`RNNWorldModel.encode_context` warms the memory up on
a clip, :meth:`RNNWorldModel.observe` advances it on a real observation (the controller's loop in
the real world). ``predict`` rolls the MDN-RNN out: the mean of the most likely component, or a
sample at ``temperature`` when ``sample=True``. ``decode`` draws the VAE decoder's reconstruction
of ``z``; ``surprise`` is the MDN's NLL of each next encoding. The state probe reads ``z`` only
(:class:`LatentProbe`): it is fitted on encoded single frames, where the memory is empty.
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
from physworld.models.probe import StateProbe

Encoder = Literal["auto", "cnn", "mlp"]
Decoder = Literal["broadcast", "cnn"]
MIN_LOG_SIGMA = (
    -7.0
)  # floor of the MDN's log-std: an exactly predictable dimension cannot reach -inf


@dataclass
class RNNConfig(ModelConfig):
    """VAE + MDN-RNN hyper-parameters (the data-derived fields of ModelConfig are filled by ``train``)."""

    family: Annotated[str, Data] = "rnn"
    latent_dim: int = 32  # z: the VAE code of one observation
    encoder: Encoder = "auto"  # "cnn" (pixels) | "mlp" (state vectors); "auto" picks by the data
    encoder_width: int = 32  # CNN base channels (x2 per layer, up to x8); MLP hidden = 8x
    decoder: Decoder = "broadcast"  # pixels: "broadcast" (spatial broadcast: z tiled beside
    # x / y coordinates) | "cnn" (deconvolutions from a dense head, what checkpoints without this field used)
    hidden: int = 256  # LSTM units (h and c each)
    mixtures: int = 5  # Gaussians in the MDN head
    temperature: float = 1.0  # sampling temperature: pi logits / T, sigma * sqrt(T) (Ha's tau)
    sample: bool = (
        False  # predict samples at `temperature`; False: mean of the most likely component
    )
    vae_steps: int = (
        1000  # stage 1 (VAE) for the first vae_steps optimizer steps, then stage 2 (MDN-RNN)
    )
    vae_frames: int = 2  # frames per window the VAE stage trains on (random; 0: all). Neighbouring
    # frames are near duplicates, so a few per window carry most of the signal at a fraction of the cost
    rollout_weight: float = 0.0  # stage 2 extra: MSE of an open-loop rollout (most likely means) after
    # one teacher-forced step, against the true encodings (0: the paper's MDN loss alone)
    kl_weight: float = 1.0
    free_bits: float = 0.5  # nats per latent dimension that the KL does not penalise
    obs_sigma: float | None = (
        None  # reconstruction std: None = 0.1 for pixels in [0, 1] (sharp enough
    )
    # for objects a few pixels wide; Ha's plain sum of squares is 0.7), 0.05 for standardised states

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("rnn encoder", self.encoder, get_args(Encoder))
        check_choice("rnn decoder", self.decoder, get_args(Decoder))
        if self.mixtures < 1 or self.latent_dim < 1 or self.hidden < 1:
            raise ValueError("rnn latent_dim, hidden and mixtures must all be at least 1")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RNNConfig:
        if "latent_dim" in values and "decoder" not in values:  # saved before the broadcast decoder
            values = {**values, "decoder": "cnn"}
        return super().from_dict(values)

    @property
    def state_size(self) -> int:
        """Size of the contract's latent ``[z, h, c]``."""
        return self.latent_dim + 2 * self.hidden

    @property
    def encoder_kind(self) -> str:
        return (
            self.encoder
            if self.encoder != "auto"
            else ("cnn" if self.obs_kind == "pixels" else "mlp")
        )

    @property
    def recon_sigma(self) -> float:
        return self.obs_sigma or (0.1 if self.obs_kind == "pixels" else 0.05)


class Take(nn.Module):
    """The first ``n`` features of the last dimension (a probe's view of ``z`` in ``[z, h, c]``)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x: Tensor) -> Tensor:
        return x[..., : self.n]


class LatentProbe(StateProbe):
    """The standard state probe on ``z`` alone, though it is given the whole ``[z, h, c]``.

    ``fit_probe`` standardises and feeds the full latent; the memory part is cut off first,
    so a probe fitted on fresh encodings (``h = c = 0``) reads rollouts (``h != 0``) the same way.
    """

    def __init__(self, latent_size: int, latent_dim: int, state_dim: int, hidden: int):
        super().__init__(latent_dim, state_dim, hidden)
        self.z_loc, self.z_scale = torch.zeros(latent_size), torch.ones(latent_size)
        self.net = nn.Sequential(Take(latent_dim), *self.net)
        self.requires_grad_(False)


class VAE(nn.Module):
    """Observation -> (mu, logvar) of ``z``, and ``z`` -> reconstruction (pixels in [-1, 1], or states)."""

    def __init__(self, c: RNNConfig):
        super().__init__()
        self.pixels = c.encoder_kind == "cnn"
        if self.pixels:
            if c.obs_kind != "pixels":
                raise ValueError(f"the cnn encoder reads pixels, but this data is {c.obs_kind!r}")
            self.encoder = blocks.CNNEncoder(c.obs_shape, 2 * c.latent_dim, c.encoder_width)
            decoder = blocks.BroadcastDecoder if c.decoder == "broadcast" else blocks.CNNDecoder
            self.decoder = decoder(c.obs_shape, c.latent_dim, c.encoder_width)
        else:
            if c.obs_kind == "pixels":
                raise ValueError("the mlp encoder reads state vectors; use cnn for pixels")
            width = 8 * c.encoder_width
            self.encoder = blocks.MLPEncoder(c.obs_shape[-1], 2 * c.latent_dim, width)
            self.decoder = blocks.mlp([c.latent_dim, width, width, c.obs_shape[-1]], norm=True)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        return self.encoder(obs).chunk(2, -1)

    def target(self, obs: Tensor) -> Tensor:
        """What the decoder's output is compared with: pixels in [-1, 1] or standardised states."""
        if self.pixels:
            return blocks.pixels_to_float(obs)
        return (obs.float() - self.encoder.loc) / self.encoder.scale

    def decode(self, z: Tensor) -> Tensor:
        """``z`` -> uint8 frames, or state vectors in world units."""
        out = self.decoder(z)
        return (
            blocks.float_to_pixels(out)
            if self.pixels
            else out * self.encoder.scale + self.encoder.loc
        )


class MDNRNN(nn.Module):
    """LSTM over ``[z_t, a_t]`` + a mixture-density head over ``z_{t+1}`` (residual means)."""

    def __init__(self, latent_dim: int, action_dim: int, hidden: int, mixtures: int):
        super().__init__()
        self.latent_dim, self.mixtures = latent_dim, mixtures
        self.lstm = nn.LSTM(latent_dim + action_dim, hidden, batch_first=True)
        # zero-initialised: the untrained model says "z stays where it is, give or take 1"
        self.head = blocks.zero_(nn.Linear(hidden, mixtures * (1 + 2 * latent_dim)))

    def forward(
        self, z: Tensor, a: Tensor, memory: tuple[Tensor, Tensor] | None = None
    ) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor, tuple[Tensor, Tensor]]:
        """``z [B, T, D]``, ``a [B, T, A]`` -> mixtures over ``z[t+1]`` (logits ``[B, T, K]``,
        means and log-stds ``[B, T, K, D]``), the LSTM outputs ``[B, T, H]`` and the memory."""
        y, (h, c) = self.lstm(torch.cat([z, a.to(z.dtype)], -1), memory)
        k, d = self.mixtures, self.latent_dim
        logits, mu, log_sigma = self.head(y).split([k, k * d, k * d], -1)
        mu = z.unsqueeze(-2) + mu.unflatten(-1, (k, d))
        log_sigma = log_sigma.unflatten(-1, (k, d)).clamp_min(MIN_LOG_SIGMA)
        return (logits, mu, log_sigma), y, (h, c)


def some_steps(k: int, *xs: Tensor) -> tuple[Tensor, ...]:
    """The same ``k`` random time steps of every ``[B, T, ...]`` sequence in ``xs`` -> ``[B, k, ...]``
    each (all of them if ``k`` is 0 or at least ``T``)."""
    b, t = xs[0].shape[:2]
    if not k or k >= t:
        return xs
    idx = torch.rand(b, t, device=xs[0].device).argsort(1)[:, :k]
    rows = torch.arange(b, device=idx.device)[:, None]
    return tuple(x[rows, idx] for x in xs)


def mdn_nll(logits: Tensor, mu: Tensor, log_sigma: Tensor, target: Tensor) -> Tensor:
    """``-log sum_k pi_k N(target | mu_k, sigma_k)`` per position (log-sum-exp over components)."""
    z = (target.unsqueeze(-2) - mu) * torch.exp(-log_sigma)
    log_normal = -0.5 * z.pow(2) - log_sigma - 0.5 * math.log(2 * math.pi)
    return -torch.logsumexp(F.log_softmax(logits, -1) + log_normal.sum(-1), -1)


def mdn_draw(
    logits: Tensor, mu: Tensor, log_sigma: Tensor, temperature: float, sample: bool
) -> Tensor:
    """One ``z`` per position: the mean of the most likely component, or a sample at ``temperature``."""
    if not sample:
        k = logits.argmax(-1, keepdim=True)
        return mu.gather(-2, k[..., None].expand(*k.shape, mu.shape[-1])).squeeze(-2)
    k = torch.distributions.Categorical(logits=logits / temperature).sample()[..., None]
    pick = lambda x: x.gather(-2, k[..., None].expand(*k.shape, x.shape[-1])).squeeze(-2)  # noqa: E731
    return pick(mu) + pick(log_sigma).exp() * math.sqrt(temperature) * torch.randn_like(pick(mu))


@register_model("rnn")
class RNNWorldModel(WorldModel):
    """VAE + MDN-RNN; see the module docstring."""

    config_class = RNNConfig
    config: RNNConfig

    def __init__(self, config: RNNConfig | dict):
        super().__init__(config)
        c = self.config
        self.vae = VAE(c)
        self.rnn = MDNRNN(c.latent_dim, c.action_dim, c.hidden, c.mixtures)
        if c.state_dim and not c.probe_input:
            self.attach_probe(c.state_size)

    def attach_probe(self, latent_size: int) -> StateProbe:
        c = self.config
        if not c.state_dim:
            raise ValueError("this model was built without a state_dim: there is no state to probe")
        c.probe_input = latent_size
        self.probe = LatentProbe(latent_size, c.latent_dim, c.state_dim, c.probe_hidden)
        return self.probe

    # --- latent <-> parts -------------------------------------------------------------------
    def split(self, state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``[..., latent_dim + 2 * hidden]`` -> ``(z, h, c)``."""
        c = self.config
        return state.split([c.latent_dim, c.hidden, c.hidden], -1)

    def _memory(self, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        return h[None].contiguous(), c[None].contiguous()

    # --- the contract -----------------------------------------------------------------------
    def encode_z(self, obs: Tensor) -> Tensor:
        """The VAE mean ``[..., latent_dim]`` of observations ``[..., *obs_shape]``."""
        event = len(self.config.obs_shape)
        if tuple(obs.shape[-event:]) != self.config.obs_shape:
            raise ValueError(
                f"observations of shape {tuple(obs.shape[-event:])} do not match the model's "
                f"{self.config.obs_shape} ({self.config.obs_kind})"
            )
        lead = obs.shape[:-event]
        return self.vae(obs.reshape(-1, *self.config.obs_shape))[0].unflatten(0, lead)

    def encode(self, obs: Tensor) -> Tensor:
        """Observations ``[..., *obs_shape]`` -> ``[z, 0, 0]``: the VAE mean and a fresh memory."""
        z = self.encode_z(obs)
        return torch.cat([z, z.new_zeros(*z.shape[:-1], 2 * self.config.hidden)], -1)

    @property
    def context_frames(self) -> int:
        return 2  # z shows positions only: the memory learns velocity from one transition

    def encode_context(self, obs: Tensor, actions: Tensor) -> Tensor:
        """A clip ``obs [B, T+1]``, ``actions [B, T]`` -> the state at its last frame, memory warmed up."""
        self.check_actions(actions)
        z = self.encode_z(obs)
        if actions.shape[1] == 0:
            return self.encode(obs[:, -1])
        _, _, (h, c) = self.rnn(z[:, :-1], actions)
        return torch.cat([z[:, -1], h[0], c[0]], -1)

    def observe(self, state: Tensor, action: Tensor, obs: Tensor) -> Tensor:
        """Advance the memory by ``action [B, A]`` and replace ``z`` by the real next ``obs``."""
        z, h, c = self.split(state)
        _, _, (h, c) = self.rnn(z[:, None], action[:, None], self._memory(h, c))
        return torch.cat([self.encode_z(obs), h[0], c[0]], -1)

    def predict(self, z: Tensor, actions: Tensor) -> Tensor:
        """Roll the MDN-RNN out open loop: ``[B, latent_dim + 2 * hidden]`` -> ``[B, H, same]``."""
        self.check_actions(actions)
        return self.rollout(z, actions, self.config.sample)

    def rollout(self, state: Tensor, actions: Tensor, sample: bool) -> Tensor:
        z, h, c = self.split(state)
        memory, out = self._memory(h, c), []
        for t in range(actions.shape[1]):
            mixture, _, memory = self.rnn(z[:, None], actions[:, t : t + 1], memory)
            z = mdn_draw(*(p[:, 0] for p in mixture), self.config.temperature, sample)
            out.append(torch.cat([z, memory[0][0], memory[1][0]], -1))
        return torch.stack(out, 1)

    def decode(self, z: Tensor) -> Tensor:
        """Latent ``[B, ...]`` (its ``z`` part) -> uint8 frames ``[B, C, H, W]`` or states ``[B, S]``."""
        return self.vae.decode(z[..., : self.config.latent_dim])

    @torch.no_grad()
    def surprise(self, obs: Tensor, actions: Tensor) -> Tensor:
        """The MDN's negative log-likelihood ``[B, T]`` of each next encoding, given the clip so far."""
        z = self.encode_z(obs)
        mixture, _, _ = self.rnn(z[:, :-1], actions)
        return mdn_nll(*mixture, z[:, 1:])

    # --- training ---------------------------------------------------------------------------
    def stage(self, step: int) -> str:
        return "vae" if step < self.config.vae_steps else "rnn"

    def loss(self, batch: dict[str, Tensor], step: int = 0) -> dict[str, Tensor]:
        obs, actions = batch["obs"], batch["actions"]
        self.check_actions(actions)
        if self.stage(step) == "vae":
            return self.vae_loss(some_steps(self.config.vae_frames, obs)[0].flatten(0, 1))
        with torch.no_grad():
            z = self.encode_z(obs)
        mixture, _, _ = self.rnn(z[:, :-1], actions)
        nll = mdn_nll(*mixture, z[:, 1:]).mean() / self.config.latent_dim
        with torch.no_grad():
            err = (mdn_draw(*mixture, 1.0, False) - z[:, 1:]).pow(2).mean()
        out = {"mdn_nll": nll.detach(), "pred_mse": err, "stage": nll.new_ones(())}
        if self.config.rollout_weight and actions.shape[1] > 1:
            out["rollout"] = self.rollout_loss(z, actions)
            nll = nll + self.config.rollout_weight * out["rollout"]
        return {"loss": nll, **out}

    def rollout_loss(self, z: Tensor, actions: Tensor) -> Tensor:
        """MSE of ``predict`` from the second frame (memory warmed up on the first) vs the encodings:
        teacher forcing alone never shows the model its own predictions."""
        _, _, memory = self.rnn(z[:, :1], actions[:, :1])
        state = torch.cat([z[:, 1], memory[0][0], memory[1][0]], -1)
        pred = self.split(self.rollout(state, actions[:, 1:], sample=False))[0]
        return F.mse_loss(pred, z[:, 2:])

    def vae_loss(self, obs: Tensor) -> dict[str, Tensor]:
        """Reconstruction (sum of squares / 2 sigma^2) + KL with free bits, per observation."""
        c = self.config
        mu, logvar = self.vae(obs)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        err = self.vae.decoder(z) - self.vae.target(obs)
        if self.vae.pixels:
            err = err / 2  # [-1, 1] -> [0, 1] scale: obs_sigma is in units of the [0, 1] image
        recon = err.pow(2).flatten(1).sum(-1).mean() / (2 * c.recon_sigma**2)
        kl_dim = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).mean(0)  # [D], batch mean
        kl = kl_dim.clamp_min(c.free_bits).sum()
        total = recon + c.kl_weight * kl
        return {
            "loss": total,
            "recon": recon.detach(),
            "kl": kl_dim.sum().detach(),
            "active_dims": (kl_dim > c.free_bits).sum().float(),
            "stage": total.new_zeros(()),
        }

    def calibrate(self, batch: dict[str, Tensor]) -> None:
        if not self.vae.pixels:
            self.vae.encoder.calibrate(batch["obs"])


__all__ = [
    "LatentProbe",
    "MDNRNN",
    "RNNConfig",
    "RNNWorldModel",
    "VAE",
    "mdn_draw",
    "mdn_nll",
    "some_steps",
]
