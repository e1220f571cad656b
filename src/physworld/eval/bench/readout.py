"""The readout protocol of Physion and PHYRE's learned baselines: a head on a model's features.

A task that answers by imagining can also ask a small classifier to read the answer off what the
model imagined, fitted on the engine's outcomes of other scenes (never the questions). It shows
what the imagined rollout holds beyond what a fixed rule reads from it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Readout:
    """A yes/no classifier of features ``[N, F]``: standardised features, an L2 weight ``decay``
    on the weights, fitted to convergence with L-BFGS (deterministic, no learning rate).

    ``hidden=0`` is logistic regression. ``hidden > 0`` puts one tanh layer of that width before
    it, for outcomes that are not a half-space of the features (a placement solves a scene only
    inside a bounded region around the green ball, say); its initial weights are seeded.
    """

    def __init__(self, features: np.ndarray, outcome: np.ndarray, decay: float, hidden: int = 0, seed: int = 0) -> None:
        x = torch.as_tensor(features, dtype=torch.float64)
        if x.ndim != 2 or len(x) != len(outcome) or not len(x):
            raise ValueError(f"a readout needs features [N, F] and N outcomes, got {tuple(x.shape)} and {len(outcome)}")
        if not torch.isfinite(x).all():
            raise ValueError("readout features must be finite (clip or replace NaN/inf before fitting)")
        self.mean, self.std = x.mean(0), x.std(0).nan_to_num(0.0).clamp_min(1e-6)
        x, y = (x - self.mean) / self.std, torch.as_tensor(outcome, dtype=torch.float64)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            width = x.shape[1]
            layers = [nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, 1)] if hidden else [nn.Linear(width, 1)]
            self.net = nn.Sequential(*layers).double()
        weights = [m.weight for m in self.net if isinstance(m, nn.Linear)]
        opt = torch.optim.LBFGS(self.net.parameters(), max_iter=500, line_search_fn="strong_wolfe")

        def objective() -> torch.Tensor:
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(self.net(x)[:, 0], y)
            loss = loss + decay * sum(w.pow(2).sum() for w in weights)
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(objective)

    @torch.no_grad()
    def logits(self, features: np.ndarray) -> np.ndarray:
        """How strongly the readout expects the outcome, ``[N]`` (ranks candidates)."""
        x = (torch.as_tensor(features, dtype=torch.float64) - self.mean) / self.std
        return self.net(x)[:, 0].numpy()

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """The readout's yes/no answers ``[N]``."""
        return self.logits(features) > 0
