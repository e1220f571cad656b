"""JEPA: encoder -> latent, action-conditioned predictor in latent space, critic against collapse.

The loss (per batch of windows ``obs [B, T+1]``, ``actions [B, T]``):

- teacher forcing: the predictor sees the true latent history and predicts every next latent;
- rollout: from every start ``s <= T-k`` (the single latent ``z[s]``, exactly what ``predict``
  is given by a planner), roll ``k`` steps on its own predictions and match ``z[s+1 : s+k+1]``:
  one-step training alone drifts when rolled out;
- critic: SIGReg / VICReg on all latents of the batch (global batch under DDP), or an EMA target
  encoder providing stop-grad targets;
- optional inverse dynamics (as in PLDM, ``idm_weight``): a small head recovers ``a[t]`` from
  ``z[t-1 : t+2]``, asking the latent to carry what the actions move.
- optional reconstruction (``recon_weight``): a decoder (an MLP for states, the CNN decoder for
  frames) maps the encoded, teacher-forced and rolled-out latents back to the observation they
  stand for, with its gradient reaching the encoder. The critic alone lets the latent drop what
  is hard to predict (measured on Balls-3 states: a probe on true frames was right 84% of the
  time); decoding keeps it complete (100%). See :meth:`JEPA.recon_loss` for the error it uses.

Known limit (measured on 64x64 Balls-3 and Push, README "JEPA critics on pixels"): with the
default CNN encoder (a global head) the latent keeps one object per world (Balls' ball 0, Push's
block) and drops the others, at 200, 600 and 2,000 steps alike, while the critic's statistic
keeps improving: one object's position, spread nonlinearly over ~40 dimensions, satisfies the
critic and the prediction loss (feature suppression). Neither the rollout loss, the keypoint
encoder, inverse dynamics nor frame reconstruction changed that. ``encoder="grid"`` (the latent
is a map of local features, so the critic's demand that every dimension vary reaches every
region of the frame) reads both Push objects (agent 5.1%, block 6.9% of the arena at 600 steps,
from 47% / 2.5%); on Balls it reads all three balls, but only to 8-26%.

Velocity: a single frame shows none, so ``frames=2`` stacks each frame with the one before it
into the encoder (:meth:`JEPA.encode_context`; ``encode`` reads one frame as if it had been
still). On the grid's latent map the ``conv`` predictor applies one local rule everywhere: on pixel
Balls an MLP over the flattened map learnt no motion at all, the conv predictor 47% of positions
right at step 10 after 1,500 steps (README, "Three model families"; recipe :data:`PIXEL_JEPA`).

Encoder, predictor and critic are chosen by name in :class:`JEPAConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from physworld.models import blocks
from physworld.models.base import Data, ModelConfig, WorldModel, check_choice, register_model
from physworld.models.critics import EMATarget, SIGReg, VICReg, collapse_stats

Encoder = Literal["auto", "cnn", "grid", "keypoints", "mlp", "vit"]
Predictor = Literal["transformer", "mlp", "gru", "conv"]
Critic = Literal["sigreg", "vicreg", "ema"]
ReconError = Literal["auto", "l1", "mse"]
DEFAULT_CRITIC_WEIGHT = {"sigreg": 0.1, "vicreg": 1.0, "ema": 0.0}


# The recipe the benchmarks found best on 2 CPU cores for state data (README, benchmarks/simulator.py):
# a small latent; a history-free MLP predictor (the state is Markov), 192 wide so a rollout step
# stays >= 10x the engine's at batch 256 (256 wide measured 8-9x); VICReg; a 10-step rollout loss;
# and state reconstruction, which took a probe on true frames from 84% to 100% on Balls-3, scored
# with L1 (75% -> 83% at step 10 in 1,000-step runs: MSE averages the outcomes it cannot tell apart).
STATE_JEPA: dict[str, object] = {
    "latent_dim": 32,
    "predictor": "mlp",
    "predictor_width": 96,
    "critic": "vicreg",
    "rollout_steps": 10,
    "recon_weight": 1.0,
}


# The recipe for pixels (README, "Three model families"; benchmarks/families.py uses it): the grid
# encoder (every object in the latent, read by the spatial probe), two stacked frames (a single
# frame shows no velocity), a convolutional predictor over the grid (an MLP over the flattened map
# learnt no motion at all on pixel Balls: 2.7% right at step 10, copy-last 3.3%), and VICReg.
PIXEL_JEPA: dict[str, object] = {
    "encoder": "grid",
    "latent_dim": 512,
    "frames": 2,
    "predictor": "conv",
    "critic": "vicreg",
}


@dataclass
class JEPAConfig(ModelConfig):
    """JEPA hyper-parameters (the data-derived fields of ModelConfig are filled by ``train``)."""

    family: Annotated[str, Data] = "jepa"
    latent_dim: int = 128  # size of the per-frame latent vector
    frames: int = 1  # consecutive frames read into each latent (2: it holds velocity, so a
    # history-free predictor can be exact); ``encode`` repeats its one frame (at rest)
    encoder: Encoder = "auto"  # cnn/grid/keypoints/vit read pixels, mlp reads states; auto: cnn or mlp
    encoder_width: int = 32  # CNN channels (x2 per layer, up to x8); MLP: 8x; ViT: 6x
    keypoints: int = 32  # keypoints encoder: channels read out as (x, y, strength)
    predictor: Predictor = "transformer"  # AdaLN-zero causal transformer | gru | mlp (no history)
    # | conv (no history, 3x3 convolutions over the grid encoder's map)
    predictor_width: int = 128
    predictor_depth: int = 2  # transformer blocks (mlp: hidden layers; conv: 3x3 layers - 1)
    predictor_heads: int = 4
    history: int = 4  # latents the transformer attends to (1: history-free fast path)
    rollout_steps: int = 4  # k of the autoregressive rollout loss (< 2 turns it off)
    rollout_weight: float = 1.0
    idm_weight: float = 0.0  # inverse dynamics: (z[t-1], z[t], z[t+1]) -> a[t] (0: off)
    recon_weight: float = 0.0  # decode latents back to the observation, gradient into the
    # encoder (0: off): the state for state obs, the frame (through the CNN decoder) for pixels
    recon_predicted: bool = True  # with recon_weight: also decode the predicted latents
    recon_error: ReconError = "auto"  # auto: l1 for states, mse for pixels (see recon_loss)
    critic: Critic = "sigreg"  # "sigreg" | "vicreg" | "ema"
    critic_weight: float | None = None  # None: 0.1 for sigreg, 1.0 for vicreg, 0 for ema
    sigreg_projections: int = 256  # random 1-D directions per step
    sigreg_knots: int = 17  # quadrature points on t in [0, sigreg_t_max]
    sigreg_t_max: float = 3.0
    ema_decay: float = 0.996
    decoder: bool = False  # pixels: a decoder for decode(); trained on stop-grad latents unless
    # recon_weight > 0, where it is the reconstruction loss's decoder
    seed: int = 0  # seeds SIGReg's directions (together with the global step)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.frames < 1:
            raise ValueError(f"JEPA frames must be at least 1, not {self.frames}")
        for name, value, allowed in (
            ("encoder", self.encoder, get_args(Encoder)),
            ("predictor", self.predictor, get_args(Predictor)),
            ("critic", self.critic, get_args(Critic)),
            ("recon_error", self.recon_error, get_args(ReconError)),
        ):
            check_choice(f"JEPA {name}", value, allowed)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> JEPAConfig:
        if "recon_l1" in values and "recon_error" not in values:  # saved before recon_error
            values = {**values, "recon_error": "l1" if values["recon_l1"] else "mse"}
        return super().from_dict(values)

    @property
    def weight_of_critic(self) -> float:
        return (
            DEFAULT_CRITIC_WEIGHT[self.critic] if self.critic_weight is None else self.critic_weight
        )


def build_encoder(c: JEPAConfig) -> nn.Module:
    """The encoder of ``frames`` observations stacked on their first axis (channels, or state values)."""
    kind = c.encoder if c.encoder != "auto" else ("cnn" if c.obs_kind == "pixels" else "mlp")
    shape = (c.frames * c.obs_shape[0], *c.obs_shape[1:])
    if kind == "mlp":
        if c.obs_kind == "pixels":
            raise ValueError("the mlp encoder reads state vectors; use cnn or vit for pixels")
        return blocks.MLPEncoder(shape[-1], c.latent_dim, width=8 * c.encoder_width)
    if c.obs_kind != "pixels":
        raise ValueError(f"the {kind} encoder reads pixels, but this data is {c.obs_kind!r}")
    if kind == "vit":
        return blocks.ViTEncoder(shape, c.latent_dim, width=6 * c.encoder_width)
    if kind == "keypoints":
        return blocks.KeypointEncoder(shape, c.latent_dim, c.encoder_width, c.keypoints)
    if kind == "grid":
        return blocks.GridEncoder(shape, c.latent_dim, c.encoder_width)
    return blocks.CNNEncoder(shape, c.latent_dim, c.encoder_width)


def build_predictor(c: JEPAConfig) -> nn.Module:
    if c.predictor == "conv":
        if c.encoder != "grid":
            raise ValueError("the conv predictor reads a latent map: it needs encoder='grid'")
        shape = blocks.GridEncoder.map_shape(c.obs_shape, c.latent_dim)
        return blocks.ConvPredictor(shape, c.action_dim, c.predictor_width, c.predictor_depth + 1)
    if c.predictor == "mlp":
        return blocks.MLPPredictor(
            c.latent_dim, c.action_dim, 2 * c.predictor_width, c.predictor_depth
        )
    if c.predictor == "gru":
        return blocks.GRUPredictor(c.latent_dim, c.action_dim, 2 * c.predictor_width)
    return blocks.TransformerPredictor(
        c.latent_dim,
        c.action_dim,
        c.predictor_width,
        c.predictor_depth,
        c.predictor_heads,
        c.history,
    )


@register_model("jepa")
class JEPA(WorldModel):
    """Joint-embedding predictive world model: predicts in latent space (decoder optional, off)."""

    config_class = JEPAConfig
    config: JEPAConfig

    def __init__(self, config: JEPAConfig | dict):
        super().__init__(config)
        c = self.config
        self.encoder = build_encoder(c)
        self.predictor = build_predictor(c)
        if c.critic == "sigreg":
            self.critic = SIGReg(
                c.latent_dim, c.sigreg_projections, c.sigreg_knots, c.sigreg_t_max, c.seed
            )
        elif c.critic == "vicreg":
            self.critic = VICReg(c.latent_dim)
        else:
            self.critic = EMATarget(self.encoder, c.ema_decay)
        if c.idm_weight:
            self.idm = blocks.mlp([3 * c.latent_dim, 2 * c.predictor_width, c.action_dim])
        if c.decoder and c.obs_kind != "pixels":
            raise ValueError("the JEPA decoder draws pixels: it needs pixel observations")
        if c.recon_weight and c.obs_kind == "state":
            self.state_decoder = blocks.mlp(
                [c.latent_dim, 8 * c.encoder_width, c.obs_shape[-1]], norm=True
            )
        elif c.decoder or c.recon_weight:
            self.decoder = blocks.CNNDecoder(c.obs_shape, c.latent_dim, c.encoder_width)
        if c.state_dim and not c.probe_input:
            self.attach_probe(c.latent_dim)

    def latent_map(self) -> tuple[int, int, int] | None:
        c = self.config
        return blocks.GridEncoder.map_shape(c.obs_shape, c.latent_dim) if c.encoder == "grid" else None

    @property
    def context_frames(self) -> int:
        return self.config.frames

    # --- the contract -----------------------------------------------------------------------
    def encode(self, obs: Tensor) -> Tensor:
        """``[..., *obs_shape]`` -> ``[..., latent_dim]`` (any number of leading dims). With
        ``frames > 1`` the frame is read as if it had been still: its copies are stacked."""
        self._check_obs(obs)
        event = len(self.config.obs_shape)
        return self._encode(self.encoder, torch.cat([obs] * self.config.frames, -event))

    def encode_context(self, obs: Tensor, actions: Tensor | None = None) -> Tensor:
        """A clip ``obs [B, T+1, *obs_shape]`` -> the latent of its last frame, read with the
        ``frames - 1`` frames before it (the encoder sees frames only, not the actions)."""
        return self.encode_clip(obs[:, -self.config.frames :])[:, -1]

    def encode_clip(self, obs: Tensor, actions: Tensor | None = None) -> Tensor:
        """``[B, T+1, *obs_shape]`` -> ``[B, T+1, latent_dim]``: every frame read with the
        ``frames - 1`` before it (the clip's first frame stands in for those before the clip)."""
        return self._encode(self.encoder, self._stack_clip(obs))

    def _stack_clip(self, obs: Tensor) -> Tensor:
        """``[B, T+1, *obs_shape]`` -> ``[B, T+1, frames * obs_shape[0], ...]``: each frame with
        the ``frames - 1`` before it, oldest first."""
        self._check_obs(obs)
        k, event = self.config.frames, len(self.config.obs_shape)
        if k == 1:
            return obs
        padded = torch.cat([obs[:, :1].expand(-1, k - 1, *obs.shape[2:]), obs], 1)
        return torch.cat([padded[:, i : i + obs.shape[1]] for i in range(k)], -event)

    def _check_obs(self, obs: Tensor) -> None:
        event = len(self.config.obs_shape)
        if tuple(obs.shape[-event:]) != self.config.obs_shape:
            raise ValueError(
                f"observations of shape {tuple(obs.shape[-event:])} do not match the model's "
                f"{self.config.obs_shape} ({self.config.obs_kind})"
            )

    def _encode(self, encoder: nn.Module, stacked: Tensor) -> Tensor:
        """Stacked frames ``[..., frames * C, ...]`` -> ``[..., latent_dim]``."""
        event = len(self.config.obs_shape)
        lead = stacked.shape[:-event]
        return encoder(stacked.reshape(-1, *stacked.shape[-event:])).unflatten(0, lead)

    def predict(self, z: Tensor, actions: Tensor) -> Tensor:
        self.check_actions(actions)
        return self.predictor.rollout(z, actions.to(z.dtype))

    @torch.no_grad()
    def surprise(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Per-step error ``[B, T]`` of predicting each next latent from the observed history (the
        predictor run teacher-forced, as in training): how much each new frame breaks what the
        frames before it led the model to expect. Like the RNN's and the diffusion model's."""
        self.check_actions(actions)
        z = self.encode_clip(obs)
        pred = self.predictor(z[:, :-1], actions.to(z.dtype))
        return (pred - z[:, 1:]).pow(2).flatten(2).mean(-1)

    @torch.no_grad()
    def forecast_error(self, obs: Tensor, actions: Tensor, horizon: int) -> Tensor:
        """As the contract's, with the predictor's own memory of the frames seen (a recurrent
        predictor remembers a ball that went behind a screen; its latent alone does not)."""
        self.check_actions(actions)
        z = self.encode_clip(obs)
        pred = self.predictor.forecast(z, actions.to(z.dtype), horizon)
        return (pred - z[:, horizon:]).pow(2).flatten(2).mean(-1)

    @property
    def has_decoder(self) -> bool:
        return hasattr(self, "decoder")

    def decode(self, z: Tensor) -> Tensor:
        """Latent ``[B, D]`` -> uint8 frame ``[B, C, H, W]`` (pixel models with a decoder:
        ``decoder=True`` or ``recon_weight > 0``)."""
        if not self.has_decoder:
            return super().decode(z)
        return blocks.float_to_pixels(self.decoder(z))

    def loss(self, batch: dict[str, Tensor], step: int = 0) -> dict[str, Tensor]:
        c = self.config
        obs, actions = batch["obs"], batch["actions"]
        self.check_actions(actions)
        if actions.shape[1] < c.frames:
            raise ValueError(
                f"windows of {actions.shape[1]} actions are too short for frames={c.frames}: "
                f"use --window of at least {c.frames}"
            )
        # the first frames - 1 frames of a window would be read with copies of its first frame
        # (at rest): not what the latent of a moving scene looks like, so they are not encoded
        stacked = self._stack_clip(obs)[:, c.frames - 1 :]
        z = self._encode(self.encoder, stacked)  # [B, T+1, D]
        obs, actions = obs[:, c.frames - 1 :], actions[:, c.frames - 1 :]
        if isinstance(self.critic, EMATarget):
            with torch.no_grad():
                target = self._encode(self.critic.encoder, stacked)
            critic = F.mse_loss(z.detach().float(), target.float())
        else:
            target = z
            critic = self.critic(z.flatten(0, 1), step)

        teacher = self.predictor(z[:, :-1], actions)
        pred = F.mse_loss(teacher, target[:, 1:])
        k = min(c.rollout_steps, actions.shape[1])
        rollout, rolled = pred.new_zeros(()), None
        if k >= 2 and c.rollout_weight:
            starts = actions.shape[1] - k + 1
            a = blocks.k_step_windows(actions, k)  # [B*starts, k, A]
            goal = blocks.k_step_windows(target[:, 1:], k)  # [B*starts, k, D]
            rolled = self.predictor.rollout(z[:, :starts].flatten(0, 1), a)
            rollout = F.mse_loss(rolled, goal)

        total = pred + c.rollout_weight * rollout + c.weight_of_critic * critic
        out = {
            "pred": pred,
            # the error of predicting no change: a predictor not below it has learnt no motion
            "copy": F.mse_loss(z[:, :-1].detach(), target[:, 1:].detach()),
            "rollout": rollout,
            "critic": critic,
            **collapse_stats(z.flatten(0, 1)),
        }
        if c.idm_weight:
            out["idm"] = self.inverse_dynamics_loss(z, actions)
            total = total + c.idm_weight * out["idm"]
        if c.recon_weight:
            out["recon"] = self.recon_loss(obs, z, teacher, rolled, k)
            total = total + c.recon_weight * out["recon"]
        elif c.decoder:  # on the last frame of each window, through a stop-grad: it never shapes z
            out["recon"] = F.mse_loss(
                self.decoder(z[:, -1].detach()), blocks.pixels_to_float(obs[:, -1])
            )
            total = total + out["recon"]
        return {"loss": total, **out}

    def recon_loss(
        self, obs: Tensor, z: Tensor, teacher: Tensor, rolled: Tensor | None, k: int
    ) -> Tensor:
        """Decode latents back to the observation they stand for (the standardised state, or
        the frame in the encoder's [-1, 1] pixel scale).

        This keeps the latent complete: the critic alone lets it drop what the prediction loss
        finds hard (a ball about to collide), and the probe can then read every value. With
        ``recon_predicted`` the teacher-forced and rolled-out latents are decoded against the
        frames they predict too: future observations are still self-supervised targets, never
        privileged information.

        ``recon_error="auto"`` scores states with L1 and frames with MSE. On states, L1's median
        commits to one outcome where the squared error's mean blurs those the state cannot tell
        apart (Balls' radii are not in it). On frames the median is the wrong choice: objects
        cover a few percent of the pixels, so the median of every pixel is the background, and
        an L1-trained decoder draws an empty arena (measured on Balls-3, 600 steps).
        """
        if self.config.obs_kind == "state":
            newest = slice(-obs.shape[-1], None)  # the encoder's statistics of the newest frame
            goal = (obs.float() - self.encoder.loc[newest]) / self.encoder.scale[newest]
            decoder = self.state_decoder
        else:
            decoder, goal = self.decoder, blocks.pixels_to_float(obs)

        l1 = self.config.recon_error == "l1" or (
            self.config.recon_error == "auto" and self.config.obs_kind == "state"
        )
        score, event = F.l1_loss if l1 else F.mse_loss, len(self.config.obs_shape)

        def error(latents: Tensor, target: Tensor) -> Tensor:
            target = target.flatten(0, -event - 1)  # [N, *obs_shape]
            return score(decoder(latents.flatten(0, -2)).view_as(target), target)

        loss = error(z, goal)
        if self.config.recon_predicted:
            loss = loss + error(teacher, goal[:, 1:])
            if rolled is not None:
                loss = loss + error(rolled, blocks.k_step_windows(goal[:, 1:], k))
        return loss

    def inverse_dynamics_loss(self, z: Tensor, actions: Tensor) -> Tensor:
        """Recover ``a[t]`` from ``(z[t-1], z[t], z[t+1])``.

        Three frames, because actions are forces: a single frame holds positions, two give a
        velocity, and only the change of velocity across three reveals the action.
        """
        if actions.shape[1] < 2:
            raise ValueError(
                "the inverse-dynamics loss needs windows of at least 2 actions "
                "(--window >= 2), or turn it off with --jepa.idm-weight 0"
            )
        triplets = torch.cat([z[:, :-2], z[:, 1:-1], z[:, 2:]], -1)
        return F.mse_loss(self.idm(triplets), actions[:, 1:])

    # --- training hooks ---------------------------------------------------------------------
    def calibrate(self, batch: dict[str, Tensor]) -> None:
        if hasattr(self.encoder, "calibrate"):
            self.encoder.calibrate(self._stack_clip(batch["obs"]))
            if isinstance(self.critic, EMATarget):
                self.critic.update(self.encoder)

    def on_step_end(self) -> None:
        if isinstance(self.critic, EMATarget):
            self.critic.update(self.encoder)
