"""Critics: what keeps a JEPA's latent space from collapsing to a constant.

- ``sigreg``: Sketched Isotropic Gaussian Regulariser (LeJEPA / LeWorldModel). Project the raw
  embeddings on M random unit directions and test each 1-D projection against N(0, 1) with the
  Epps-Pulley statistic, ``N * integral |phi_N(t) - exp(-t^2/2)|^2 w(t) dt``, where ``phi_N`` is
  the empirical characteristic function and ``w(t) = exp(-t^2/2)``; the integral is a trapezoid
  rule on a grid of t in [0, t_max] (the integrand is even).
- ``vicreg``: variance (hinge on each dimension's std) + covariance (off-diagonal energy).
- ``ema``: a BYOL-style stop-grad target encoder, an exponential moving average of the online one.

Data-parallel correctness: both statistics are sums over samples, so each rank computes its
partial sums and they are all-reduced (differentiably) before the test; SIGReg's directions come
from a generator seeded by the global step, so they are identical on every rank. The critic
therefore sees the global batch, and its value equals the single-process value on that batch.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward is also a sum over ranks.

    Every rank computes the same scalar loss from the summed statistics, so each local sample's
    gradient arrives from every rank: summing the incoming gradients gives world_size times the
    true gradient, which DDP's gradient averaging divides back out.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(x: Tensor) -> Tensor:
    """Differentiable global sum over ranks; the identity outside torch.distributed."""
    return _AllReduceSum.apply(x) if world_size() > 1 else x


class SIGReg(nn.Module):
    """Epps-Pulley test of M random 1-D projections against N(0, 1), averaged over directions."""

    def __init__(
        self, dim: int, projections: int = 256, knots: int = 17, t_max: float = 3.0, seed: int = 0
    ):
        super().__init__()
        self.dim, self.projections, self.seed = dim, projections, seed
        t = torch.linspace(0, t_max, knots, dtype=torch.float64)
        trapezoid = torch.full_like(t, t_max / (knots - 1))
        trapezoid[[0, -1]] /= 2
        phi = torch.exp(-0.5 * t**2)  # characteristic function of N(0, 1), also the weight w(t)
        self.register_buffer("t", t.float(), persistent=False)
        self.register_buffer("phi", phi.float(), persistent=False)
        self.register_buffer("weights", (2 * trapezoid * phi).float(), persistent=False)  # x2: t<0

    def directions(self, step: int, device: torch.device) -> Tensor:
        """Unit directions [D, M]: the same on every rank for the same (seed, step)."""
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + int(step)) % 2**63)
        a = torch.randn(self.dim, self.projections, generator=gen)
        return (a / a.norm(dim=0)).to(device)

    def forward(self, z: Tensor, step: int = 0) -> Tensor:
        return self.statistics(z, step).mean()

    def statistics(self, z: Tensor, step: int = 0) -> Tensor:
        """The Epps-Pulley statistic of each direction, ``[M]`` (about 1.06 for N(0, 1) data)."""
        with torch.autocast(z.device.type, enabled=False):
            x = (z.float() @ self.directions(step, z.device))[..., None] * self.t  # [N, M, K]
            sums = torch.stack([x.cos().sum(0), x.sin().sum(0)])  # [2, M, K]
            count = torch.full((1,), float(len(z)), device=z.device)
            packed = all_reduce_sum(torch.cat([sums.flatten(), count]))
            n = packed[-1]
            cos_mean, sin_mean = (packed[:-1] / n).view_as(sums)
            err = (cos_mean - self.phi).square() + sin_mean.square()  # |phi_N - phi|^2
            return n * (err @ self.weights)


class VICReg(nn.Module):
    """Variance hinge + covariance penalty from globally summed first and second moments."""

    def __init__(
        self, dim: int, var_weight: float = 1.0, cov_weight: float = 0.04, eps: float = 1e-4
    ):
        super().__init__()
        self.dim, self.var_weight, self.cov_weight, self.eps = dim, var_weight, cov_weight, eps

    def forward(self, z: Tensor, step: int = 0) -> Tensor:
        with torch.autocast(z.device.type, enabled=False):
            x = z.float()
            d = x.shape[1]
            count = torch.full((1,), float(len(x)), device=x.device)
            packed = all_reduce_sum(torch.cat([x.sum(0), (x.T @ x).flatten(), count]))
            n = packed[-1]
            mean, second = packed[:d] / n, packed[d:-1].view(d, d)
            cov = (second - n * torch.outer(mean, mean)) / (n - 1)
            # the summed moments cancel in float32: a near-constant dimension far from zero (a
            # grid cell that always shows the wall) can come out slightly negative
            std = (cov.diagonal().clamp_min(0) + self.eps).sqrt()
            off = cov - torch.diag(cov.diagonal())
            return (
                self.var_weight * F.relu(1 - std).mean() + self.cov_weight * off.square().sum() / d
            )


class EMATarget(nn.Module):
    """A frozen copy of the encoder that tracks the online one: ``target <- d*target + (1-d)*online``.

    Its regulariser value is zero (the stop-grad target is the mechanism); JEPA reports the
    online/target distance as the critic's diagnostic.
    """

    def __init__(self, encoder: nn.Module, decay: float = 0.996):
        super().__init__()
        self.decay = decay
        self.encoder = copy.deepcopy(encoder).requires_grad_(False)

    @torch.no_grad()
    def update(self, online: nn.Module) -> None:
        for t, o in zip(self.encoder.parameters(), online.parameters(), strict=True):
            t.lerp_(o.detach(), 1 - self.decay)
        for t, o in zip(self.encoder.buffers(), online.buffers(), strict=True):
            t.copy_(o)

    def forward(self, z: Tensor, step: int = 0) -> Tensor:
        return z.new_zeros(())


@torch.no_grad()
def collapse_stats(z: Tensor) -> dict[str, Tensor]:
    """Collapse diagnostics of a latent batch ``[N, D]``.

    ``std_mean``/``std_min``: per-dimension standard deviation; ``eff_rank``: exp of the entropy
    of the normalised singular values of the centred batch (1 = collapsed to a line, D = full).
    """
    x = z.detach().float().flatten(1)
    x = x - x.mean(0)
    std = x.std(0)
    s = torch.linalg.svdvals(x)
    p = s / s.sum().clamp_min(1e-12)
    entropy = -(p * p.clamp_min(1e-12).log()).sum()
    return {"std_mean": std.mean(), "std_min": std.min(), "eff_rank": entropy.exp()}
