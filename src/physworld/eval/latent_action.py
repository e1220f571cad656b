"""Metrics of the latent-action family (Genie): controllability, action probe, codebook, frames.

- :func:`delta_psnr` -- Genie's ΔtPSNR: ``PSNR(x_t, x̂_t) - PSNR(x_t, x̂'_t)`` at ``t = 4``, where
  ``x̂`` is generated from the latent actions inferred from the real clip and ``x̂'`` from latent
  actions drawn uniformly at random. Large when the latent actions control the world.
- :func:`action_probe` -- how well latent actions name the true actions, on held-out
  transitions: Genie's lookup table (each code -> the true action it co-occurs with most,
  fitted on 200 labelled transitions; its recall per true action shows which it misses) and a
  linear (softmax) probe on the continuous pre-quantisation action vector, fitted on the same
  transitions. Installs the lookup in the model, so ``model.predict`` then takes the world's
  actions.
- :func:`codebook_stats` -- how many codes are used and the perplexity of their histogram.
- :func:`next_frame_quality` -- PSNR / SSIM of one-step predictions against the engine's frame,
  with the inferred latent action and with the true action mapped through the lookup.

True actions are read here only, for scoring; training never sees them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from physworld.models.latent_action import LatentAction, class_names, psnr, to_unit


@dataclass
class Transitions:
    """Latent actions inferred on labelled transitions (flattened over clips and time)."""

    codes: Tensor  # [N] latent action index
    vectors: Tensor  # [N, code_dim] action-encoder output before quantisation
    labels: Tensor  # [N] true action class (see models.latent_action.action_classes)


def clips(windows: Any, count: int, seed: int = 0) -> dict[str, Tensor]:
    """``count`` distinct windows (fewer if there are not that many), drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    index = rng.choice(len(windows), min(count, len(windows)), replace=False)
    return windows.gather(np.sort(index))


@torch.no_grad()
def transitions(
    model: LatentAction, windows: Any, count: int, seed: int = 0, batch_size: int = 64
) -> Transitions:
    """Infer latent actions on ``count`` transitions of ``windows`` (whole clips, then cut)."""
    model.eval()
    per_clip = windows.length
    batch = clips(windows, -(-count // per_clip), seed)
    codes, vectors = [], []
    for lo in range(0, len(batch["obs"]), batch_size):
        obs = batch["obs"][lo : lo + batch_size].to(_device(model))
        vectors.append(model.action_vectors(obs).flatten(0, 1).cpu())
        codes.append(model.infer_actions(obs).flatten().cpu())
    labels = model.world_classes(batch["actions"]).flatten()
    return Transitions(torch.cat(codes)[:count], torch.cat(vectors)[:count], labels[:count])


def _device(model: LatentAction) -> torch.device:
    return next(model.parameters()).device


def fit_action_lookup(
    model: LatentAction, windows: Any, count: int = 200, seed: int = 0
) -> dict[str, Any]:
    """Fit Genie's lookup on ``count`` labelled transitions and install it in ``model``.

    Each code maps to the true action class it co-occurs with most (-1 if never seen); each
    class maps to the code it is most often given (-1 if never seen). Returns the tables.
    """
    data = transitions(model, windows, count, seed)
    names = class_names(model.config.action_dim, model.choice_names)
    counts = torch.zeros(model.config.codes, len(names), dtype=torch.long)
    counts.index_put_((data.codes, data.labels), torch.ones_like(data.codes), accumulate=True)
    code_to_action = torch.where(counts.sum(1) > 0, counts.argmax(1), -1)
    action_to_code = torch.where(counts.sum(0) > 0, counts.argmax(0), -1)
    model.set_lookup(names, action_to_code, code_to_action)
    return {
        "action_names": names,
        "code_to_action": code_to_action.tolist(),
        "action_to_code": action_to_code.tolist(),
        "counts": counts.tolist(),
    }


def linear_probe(train: Transitions, test: Transitions, classes: int, steps: int = 300) -> float:
    """Accuracy on ``test`` of a softmax-regression probe fitted on ``train``'s action vectors."""
    loc, scale = train.vectors.mean(0), train.vectors.std(0).clamp_min(1e-6)
    x, x_test = (train.vectors - loc) / scale, (test.vectors - loc) / scale
    probe = torch.nn.Linear(x.shape[1], classes)
    opt = torch.optim.LBFGS(
        probe.parameters(), lr=0.5, max_iter=steps, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(probe(x), train.labels) + 1e-3 * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return float((probe(x_test).argmax(1) == test.labels).float().mean())


def action_probe(
    model: LatentAction,
    fit_windows: Any,
    test_windows: Any,
    fit_transitions: int = 200,
    test_transitions: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """Lookup-table and linear-probe accuracy on held-out transitions (installs the lookup)."""
    fit_action_lookup(model, fit_windows, fit_transitions, seed)
    train = transitions(model, fit_windows, fit_transitions, seed)
    test = transitions(model, test_windows, test_transitions, seed + 1)
    classes = len(model.config.action_names)
    mapped = model.code_to_action.cpu()[test.codes]
    chance = float(torch.bincount(test.labels, minlength=classes).max()) / len(test.labels)
    hit = (mapped == test.labels).float()
    recall = {  # which true moves the lookup misses (moves absent from the test data: no key)
        f"probe_lookup_recall_{name}": float(hit[test.labels == k].mean())
        for k, name in enumerate(model.config.action_names)
        if (test.labels == k).any()
    }
    return {
        "probe_lookup_acc": float(hit.mean()),
        **recall,
        "probe_linear_acc": linear_probe(train, test, classes),
        "probe_majority_baseline": chance,
        "probe_fit_transitions": float(len(train.labels)),
        "probe_test_transitions": float(len(test.labels)),
    }


def codebook_stats(
    model: LatentAction, windows: Any, count: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Codes used (count and fraction of the codebook) and the perplexity of their histogram."""
    codes = transitions(model, windows, count, seed).codes
    hist = torch.bincount(codes, minlength=model.config.codes).float()
    p = hist / hist.sum()
    return {
        "codes_used": float((hist > 0).sum()),
        "code_usage": float((hist > 0).float().mean()),
        "code_perplexity": float(torch.exp(-(p * p.clamp_min(1e-12).log()).sum())),
        **{f"code_{i}_share": float(v) for i, v in enumerate(p)},
    }


@torch.no_grad()
def delta_psnr(
    model: LatentAction, windows: Any, t: int = 4, count: int = 256, seed: int = 0
) -> dict[str, float]:
    """Genie's ΔtPSNR at step ``t`` (windows need ``t + history - 1`` actions).

    Each clip starts from a real frame history; ``x̂_t`` rolls out the ``t`` latent actions
    inferred from the clip, ``x̂'_t`` ``t`` latent actions drawn uniformly from the codebook.
    """
    model.eval()
    k = model.config.history
    if windows.length < t + k - 1:
        raise ValueError(
            f"ΔtPSNR at t={t} needs windows of {t + k - 1} actions, got {windows.length}"
        )
    batch = clips(windows, count, seed)
    obs = batch["obs"].to(_device(model))
    gen = torch.Generator().manual_seed(seed)
    ours, rand = [], []
    for lo in range(0, len(obs), 64):
        x = obs[lo : lo + 64, : t + k]
        z0 = model.encode_history(x[:, :k])
        inferred = model.infer_actions(x)[:, k - 1 :]
        random = torch.randint(0, model.config.codes, inferred.shape, generator=gen).to(
            inferred.device
        )
        truth = x[:, -1]
        ours.append(psnr(model.decode(model.predict_latent(z0, inferred)[:, -1]), truth))
        rand.append(psnr(model.decode(model.predict_latent(z0, random)[:, -1]), truth))
    p, q = torch.cat(ours).mean(), torch.cat(rand).mean()
    return {
        "psnr_inferred": float(p),
        "psnr_random": float(q),
        "delta_psnr": float(p - q),
        "delta_psnr_t": float(t),
    }


def ssim(pred: Tensor, true: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Per-image SSIM (Wang et al. 2004: Gaussian 11x11 window, σ 1.5) of ``[B, C, H, W]`` frames."""
    x, y = to_unit(pred), to_unit(true)
    c = x.shape[1]
    g = torch.exp(
        -((torch.arange(window, dtype=torch.float32) - window // 2) ** 2) / (2 * sigma**2)
    )
    g = (g / g.sum()).to(x.device)
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window)
    blur = lambda v: F.conv2d(v, kernel, groups=c)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


@torch.no_grad()
def next_frame_quality(
    model: LatentAction, windows: Any, count: int = 256, seed: int = 0
) -> dict[str, float]:
    """One-step PSNR / SSIM against the engine's next frame, from a real frame history.

    ``inferred``: the latent action inferred from the true pair (a reconstruction bound);
    ``world``: the true world action through the fitted lookup (if any), as a simulator is used;
    ``copy``: the last frame repeated (what "nothing moves" scores).
    """
    model.eval()
    k = model.config.history
    batch = clips(windows, count, seed)
    obs, actions = batch["obs"].to(_device(model)), batch["actions"].to(_device(model))
    x = obs[:, : k + 1]
    z0, truth = model.encode_history(x[:, :k]), x[:, k]
    preds = {"inferred": model.predict_latent(z0, model.infer_actions(x)[:, k - 1 :])[:, -1]}
    if model.config.action_names:
        preds["world"] = model.predict(z0, actions[:, k - 1 : k])[:, -1]
    out = {
        "copy_psnr": float(psnr(x[:, k - 1], truth).mean()),
        "copy_ssim": float(ssim(x[:, k - 1], truth).mean()),
    }
    for name, z in preds.items():
        frame = model.decode(z)
        out[f"next_psnr_{name}"] = float(psnr(frame, truth).mean())
        out[f"next_ssim_{name}"] = float(ssim(frame, truth).mean())
    return out


def evaluate_latent_action(
    model: LatentAction,
    fit_windows: Any,
    test_windows: Any,
    seed: int = 0,
    fit_transitions: int = 200,
    long_t: int = 16,
) -> dict[str, float]:
    """Every metric of this family: the action probe first (it installs the lookup the
    world-action frame metrics use), then codebook, ΔtPSNR (t = 4, and ``long_t`` for drift,
    keys ``*_long``) and next-frame quality on held-out clips."""
    from physworld.data import Windows

    results = action_probe(model, fit_windows, test_windows, fit_transitions, seed=seed)
    results.update(codebook_stats(model, test_windows, seed=seed))
    results.update(delta_psnr(model, test_windows, seed=seed))
    if long_t:
        long = Windows(test_windows.store, long_t + model.config.history - 1)
        results.update(
            {f"{k}_long": v for k, v in delta_psnr(model, long, t=long_t, seed=seed).items()}
        )
    results.update(next_frame_quality(model, test_windows, seed=seed))
    return results


# Issue targets: key -> (threshold, strictly above?, as written)
TARGETS = {
    "delta_psnr": (1.0, True, "> 1.0 dB"),
    "probe_lookup_acc": (0.9, False, ">= 90%"),
    "probe_linear_acc": (0.9, False, ">= 90%"),
}
ROWS = [  # (key, label, shown as a percentage)
    ("delta_psnr", "ΔtPSNR at t = 4 (dB): inferred minus random latent actions", False),
    ("psnr_inferred", "PSNR at t = 4, inferred latent actions (dB)", False),
    ("psnr_random", "PSNR at t = 4, random latent actions (dB)", False),
    ("probe_lookup_acc", "action probe: lookup table fitted on 200 labelled transitions", True),
    ("probe_linear_acc", "action probe: linear, same 200 transitions", True),
    ("codes_used", "codes used (held out)", False),
    ("code_perplexity", "codebook perplexity (held out)", False),
    ("next_psnr_inferred", "next-frame PSNR, inferred latent action (dB)", False),
    ("next_ssim_inferred", "next-frame SSIM, inferred latent action", False),
    ("copy_psnr", "next-frame PSNR of copying the last frame (baseline, dB)", False),
]


def evaluate_on_fresh_episodes(
    model: LatentAction, episodes: int, seed: int, work: Path
) -> dict[str, float]:
    """Collect ``episodes`` held-out episodes of the model's world with its scripted explorer
    (true actions kept for scoring only), fit the probes on one half and score on the other."""
    from physworld.data import CollectConfig, EpisodeStore, Windows, collect

    c = model.config
    data = collect(
        CollectConfig(
            world=c.world,
            episodes=max(4, episodes),
            out=work,
            policy="expert",
            seed=seed,
            overwrite=True,
            world_kwargs=json.dumps(c.world_kwargs),
        )
    )
    fit_half, test_half = EpisodeStore.open(data, world=c.world).split(0.5, seed=seed)
    cut = c.history + 3  # ΔtPSNR at t = 4 from a real history of `history` frames
    return evaluate_latent_action(
        model, Windows(fit_half, cut), Windows(test_half, cut), seed=seed, long_t=0
    )


def target_met(key: str, value: float) -> str:
    if key not in TARGETS:
        return ""
    threshold, strict, text = TARGETS[key]
    met = value > threshold if strict else value >= threshold
    return f"{text}: {'met' if met else 'NOT met'}"


def latent_action_section(results: dict[str, float]) -> str:
    """The family's metrics as one table, with the targets beside them."""
    from physworld.eval import html

    rows = [
        [
            label,
            f"{100 * results[key]:.1f}%" if percent else f"{results[key]:.4g}",
            target_met(key, results[key]),
        ]
        for key, label, percent in ROWS
        if key in results
    ]
    return html.section(
        "Latent actions (Genie's metrics)",
        html.paragraph(
            "Scored on freshly collected held-out episodes of the world (its scripted explorer): the true actions "
            "are used only here, to fit the action probes on one half of the episodes and to score on the other.",
            note=True,
        ),
        html.table(["metric", "value", "target"], rows),
    )
