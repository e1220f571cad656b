"""results.json and the HTML sections of an evaluation: tables, the error-vs-horizon plot,
and engine-vs-model animations drawn with the world's own ``render_state``."""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no GUI backend, nothing global

from physworld.eval import html
from physworld.eval.trajectory import DESCRIPTIONS, ModelRollout, Scenes

HEADLINE_STEPS = (1, 10, 30)
NAMES = {
    "engine_oracle": "engine (oracle)",
    "copy_last_state": "copy last state",
    "constant_velocity": "constant velocity",
    "model": "model",
    "model_probe_on_truth": "model probe on true frames (diagnostic)",
}


def versions() -> dict[str, str]:
    import gymnasium
    import pymunk
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pymunk": pymunk.version,
        "gymnasium": gymnasium.__version__,
        "physworld": importlib.metadata.version("physworld"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def report_steps(horizon: int) -> list[int]:
    """The steps quoted in tables: 1, 10, 30 where within the horizon, and the horizon."""
    return sorted({s for s in HEADLINE_STEPS if s <= horizon} | {horizon})


def finite(value: Any) -> Any:
    """``value`` with numpy scalars made Python and non-finite floats made ``None`` (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if isinstance(value, np.generic | np.ndarray):
        return finite(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, results: dict) -> Path:
    """Atomically write ``results`` (made finite) as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(finite(results), indent=2, allow_nan=False))
    tmp.replace(path)
    return path


# --- sections ----------------------------------------------------------------------------------


def accuracy_table(split: dict, steps: list[int]) -> str:
    """One row per predictor: accuracy and position RMSE at the quoted steps."""
    header = ["predictor"] + [f"accuracy @{s}" for s in steps] + [f"pos. RMSE @{s}" for s in steps]
    header += [f"vel. RMSE @{steps[-1]}"]
    rows = []
    for name, m in split["predictors"].items():
        acc = [f"{100 * m['accuracy_at_step'][s - 1]:.1f}%" for s in steps]
        rmse = [m["position_rmse"][s - 1] for s in steps]
        rows.append([NAMES.get(name, name), *acc, *rmse, m["velocity_rmse"][steps[-1] - 1]])
    return html.table(header, rows)


def error_plot(results: dict) -> str:
    """Accuracy and position RMSE against the horizon step, every predictor, ID solid, OOD dashed."""
    fig = Figure(figsize=(12, 4))
    acc_ax, err_ax = fig.subplots(1, 2)
    steps = results["steps"]
    splits = [("", "-", results["in_distribution"])]
    if results["out_of_distribution"].get("applicable"):
        splits.append((" (OOD)", "--", results["out_of_distribution"]))
    for suffix, style, split in splits:
        for i, (name, m) in enumerate(split["predictors"].items()):
            kw = {"linestyle": style, "color": f"C{i}", "label": NAMES.get(name, name) + suffix}
            acc_ax.plot(steps, 100 * np.asarray(m["accuracy_at_step"]), **kw)
            err_ax.plot(steps, m["position_rmse"], **kw)
    eps = results["settings"]["epsilon_world_units"]
    acc_ax.set(xlabel="horizon step", ylabel=f"% of positions within {eps:.3g} world units", ylim=(-2, 102))
    err_ax.set(xlabel="horizon step", ylabel="position RMSE (world units, symlog)")
    err_ax.set_yscale("symlog", linthresh=0.05)  # the oracle's exact 0 stays on the plot
    for ax in (acc_ax, err_ax):
        ax.grid(alpha=0.3)
    err_ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return html.figure_tag(fig, "accuracy (left) and position RMSE (right) against the horizon step")


def speed_table(speed: dict, accuracy: str) -> str:
    header = ["mode", "batch", "model timed as", "engine steps/s", "model steps/s", "model / engine", "model accuracy"]
    rows = [
        [mode, r["batch"], r["model"], f"{r['engine_steps_per_s']:,.0f}", f"{r['model_steps_per_s']:,.0f}",
         f"{r['speedup_model_over_engine']:.2f}x", accuracy]
        for mode in ("state", "pixels")
        for r in speed[mode]["rows"]
    ]
    return html.table(header, rows)


def results_sections(results: dict) -> list[str]:
    """The sections that come from the numbers alone (what the demo and the report share)."""
    s = results["settings"]
    steps = report_steps(s["horizon"])
    headline = results["headline"]
    parts = [
        html.section(
            "Learned simulator vs the physics engine",
            html.paragraph(headline["statement"]),
            html.paragraph(
                f"Model {results['model']['path']} ({results['model']['family']}, obs {s['obs_kind']}) on "
                f"{s['world']}: {s['episodes']} held-out scenes (reset seeds {s['seeds'][0]}..{s['seeds'][1]}), "
                f"horizon {s['horizon']} env steps of {s['step_seconds']:.4g} s ({s['frame_skip']} physics "
                f"substeps each; one model step predicts one env step), actions from the {s['policy']!r} policy. "
                f"An object position counts as accurate within {s['epsilon_world_units']:.3g} world units "
                f"({100 * s['epsilon']:.3g}% of the arena width).",
                note=True,
            ),
        ),
        html.section(
            "Trajectory accuracy (in distribution)",
            accuracy_table(results["in_distribution"], steps),
            html.table(["predictor", "what it is"], [[NAMES[k], v] for k, v in DESCRIPTIONS.items()]),
            error_plot(results),
        ),
    ]
    ood = results["out_of_distribution"]
    more = ood["more_objects"]
    more_note = html.paragraph(f"More objects: not applicable. {more['reason']}", note=True)
    if ood.get("applicable"):
        parts.append(html.section(
            "Out of distribution",
            html.paragraph("Changed from the training ranges: " + "; ".join(ood["changes"])),
            accuracy_table(ood, steps),
            more_note,
        ))
    else:
        parts.append(html.section("Out of distribution", html.paragraph(f"Not applicable: {ood['reason']}"), more_note))
    if "speed" in results:
        sp = results["speed"]
        parts.append(html.section(
            "Speed, side by side",
            html.paragraph(
                f"Env steps per second; one step advances {s['step_seconds']:.4g} simulated seconds for "
                f"both (the engine runs {s['frame_skip']} physics substeps, the model one prediction). "
                f"{s['threads']} thread(s), model on {s['device']}, median of "
                f"{s['speed_repeats']} timings after {s['speed_warmup']} warm-up calls. Engine batch B = B "
                "independent envs stepped in a loop; model batch B = one predict call over the horizon "
                f"on B latents (encoding the first observation is not timed). State mode: engine = "
                f"{sp['state']['engine']}. Pixel mode: engine = {sp['pixels']['engine']}. The model "
                "column says what was timed on the model's side.",
                note=True,
            ),
            speed_table(sp, ", ".join(f"{100 * v:.1f}% @{k}" for k, v in headline["model_accuracy_at_step"].items())),
        ))
    return parts


# --- animations ----------------------------------------------------------------------------------


def side_by_side(panels: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Frames ``[H, W, 3]`` left to right with white gaps."""
    h = panels[0].shape[0]
    sep = np.full((h, gap, 3), 255, np.uint8)
    row = [p for panel in panels for p in (panel, sep)][:-1]
    return np.concatenate(row, axis=1)


def animation(scenes: Scenes, rollout: ModelRollout, index: int) -> bytes:
    """Engine | model (probe states, drawn by the world's renderer) | decoded frames, if any."""
    env = scenes.make_env(index)
    frames = []
    for t in range(scenes.horizon + 1):
        true = env.render_state(scenes.states[index, t])
        pred = true if t == 0 else env.render_state(rollout.states[index, t - 1])
        panels = [true, pred]
        if rollout.frames is not None and index < len(rollout.frames):
            decoded = true if t == 0 else rollout.frames[index, t - 1]
            if decoded.shape == true.shape:
                panels.append(decoded)
        frames.append(side_by_side(panels))
    env.close()
    return html.gif(frames, fps=8, scale=3)


def animation_section(title: str, scenes: Scenes, rollout: ModelRollout, count: int) -> str:
    columns = "engine | model (probe states drawn by the world's render_state)"
    if rollout.frames is not None:
        columns += " | model decoded frames"
    figures = [
        html.image_tag(animation(scenes, rollout, i), f"seed {scenes.seeds[i]}", mime="image/gif")
        for i in range(min(count, len(scenes.seeds)))
    ]
    note = html.paragraph(f"Left to right: {columns}. Frame 0 is the given observation.", note=True)
    return html.section(title, note, *figures)
