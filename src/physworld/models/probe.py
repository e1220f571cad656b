"""The state probe: latent -> ground-truth object state, for any WorldModel.

Every evaluation reads object positions out of a model through this probe, so it is fitted the
same way for every family: the model is frozen, single frames are encoded with
``model.encode``, and a small MLP (or linear map) is regressed onto the engine's state vector.
The probe is a submodule of the model (``model.probe``), so it is saved in ``model.safetensors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from physworld.models.blocks import mlp

if TYPE_CHECKING:
    from physworld.models.base import WorldModel

STATE_FIELDS = 6  # (x, y, vx, vy, angle, angvel) per object, object-major


def object_positions(states: Tensor) -> Tensor:
    """``[..., n_objects * 6]`` -> ``[..., n_objects, 2]`` (the (x, y) of every object)."""
    return states.unflatten(-1, (-1, STATE_FIELDS))[..., :2]


def position_error(pred: Tensor, true: Tensor, arena_size: float = 1.0) -> float:
    """Mean Euclidean distance between predicted and true object positions, / arena_size."""
    dist = (object_positions(pred.float()) - object_positions(true.float())).norm(dim=-1)
    return float(dist.mean().detach()) / arena_size


class StateProbe(nn.Module):
    """Standardised latent -> MLP (or linear) -> de-standardised state. Frozen unless fitting."""

    def __init__(self, latent_size: int, state_dim: int, hidden: int = 256):
        super().__init__()
        self.net = mlp(
            [latent_size, hidden, hidden, state_dim] if hidden else [latent_size, state_dim]
        )
        for name, size in (
            ("z_loc", latent_size),
            ("z_scale", latent_size),
            ("s_loc", state_dim),
            ("s_scale", state_dim),
        ):
            self.register_buffer(
                name, torch.zeros(size) if name.endswith("loc") else torch.ones(size)
            )
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.requires_grad_(False)  # never touched by the model's own training (nor by DDP)

    def forward(self, z: Tensor) -> Tensor:
        if not bool(self.fitted):
            raise RuntimeError(
                "the state probe was never fitted: run physworld.models.probe.fit_probe(model, "
                "windows) (physworld train does this when --probe-steps > 0)"
            )
        return self.net((z.float() - self.z_loc) / self.z_scale) * self.s_scale + self.s_loc

    @torch.no_grad()
    def reset(self, z: Tensor, states: Tensor) -> None:
        """Re-initialise the weights and fit the standardisation to ``(z, states)``."""
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        self.z_loc.copy_(z.mean(0))
        self.z_scale.copy_(z.std(0).clamp_min(1e-6))
        self.s_loc.copy_(states.mean(0))
        self.s_scale.copy_(states.std(0).clamp_min(1e-6))
        self.fitted.fill_(False)


@torch.no_grad()
def encode_frames(
    model: WorldModel, windows: Any, frames: int, batch_size: int = 32, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Encode single frames from ``windows`` until ``frames`` are collected: (latents, states).

    Only the first frame of each window is used: windows overlap, so taking all their frames
    would repeat frames and let the probe memorise them. Latents are flattened to ``[N, F]``
    so the probe works for any latent shape.
    """
    device = next(model.parameters()).device
    zs, ss, count = [], [], 0
    for batch in windows.batches(batch_size, seed):
        obs, states = batch["obs"][:, 0], batch["states"][:, 0]
        zs.append(model.encode(obs.to(device)).flatten(1).float().cpu())
        ss.append(states.float())
        count += len(obs)
        if count >= frames:
            break
    return torch.cat(zs)[:frames], torch.cat(ss)[:frames]


def fit_probe(
    model: WorldModel,
    windows: Any,
    *,
    steps: int = 1000,
    frames: int = 4096,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    eval_windows: Any | None = None,
    eval_frames: int = 1024,
) -> dict[str, float]:
    """Fit ``model.probe`` (attached if missing) on frozen latents; return its errors.

    ``windows`` are labelled training windows (anything with ``.batches(batch_size, seed)``
    yielding ``obs`` and ``states``). Errors are measured on ``eval_windows`` (e.g. held-out
    episodes) when given, else on the last 10% of the collected frames (other windows, same
    episodes). ``probe_pos_err`` is the mean object-position error / ``arena_size``.
    """
    was_training = model.training
    model.eval()
    z, s = encode_frames(model, windows, frames, batch_size, seed)
    if eval_windows is not None:
        z_val, s_val = encode_frames(model, eval_windows, eval_frames, batch_size, seed + 1)
    else:
        cut = max(1, len(z) // 10)
        z, s, z_val, s_val = z[:-cut], s[:-cut], z[-cut:], s[-cut:]
    probe = getattr(model, "probe", None) or model.attach_probe(z.shape[1])
    device = probe.z_loc.device
    z, s, z_val, s_val = (t.to(device) for t in (z, s, z_val, s_val))

    probe.reset(z, s)
    probe.requires_grad_(True)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    gen = torch.Generator().manual_seed(seed)
    target = (s - probe.s_loc) / probe.s_scale
    with torch.enable_grad():
        for _ in range(steps):
            idx = torch.randint(len(z), (min(256, len(z)),), generator=gen).to(device)
            pred = probe.net((z[idx] - probe.z_loc) / probe.z_scale)
            loss = F.mse_loss(pred, target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    probe.requires_grad_(False)
    probe.fitted.fill_(True)
    model.train(was_training)

    with torch.no_grad():
        pred_val, pred_fit = probe(z_val), probe(z)
    arena = float(model.config.arena_size)
    metrics = {
        "probe_pos_err": position_error(pred_val, s_val, arena),
        "probe_pos_err_fit": position_error(pred_fit, s, arena),
        "probe_state_mse": float(
            F.mse_loss(
                (pred_val - probe.s_loc) / probe.s_scale, (s_val - probe.s_loc) / probe.s_scale
            )
        ),
        "probe_frames": float(len(z)),
    }
    return metrics
