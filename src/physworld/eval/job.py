"""The options every command that runs a trained model against the engine shares.

``physworld eval`` and ``physworld plan`` subclass :class:`ModelJobConfig`, so a model, its
world, the threads, the device and the output folder are named and checked the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro


@dataclass
class ModelJobConfig:
    """A trained model, the world it runs in, and where the run's report goes."""

    model: tyro.conf.Positional[Path] = Path("runs/jepa")
    """Checkpoint folder, or a training run folder holding one in model/."""
    world: str | None = None
    """World to run in (None: the model's own). Must be the world the model was trained on."""
    threads: int = 2
    """CPU threads for PyTorch and BLAS (the engine is single-threaded either way)."""
    device: str = "cpu"
    """Device for the model: cpu (the fair comparison with the CPU engine), cuda, auto."""
    out: Path = Path("reports")
    """Folder for results.json and report.html."""
