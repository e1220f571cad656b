"""Process-wide settings every command shares: thread count, device choice, seeding."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def set_threads(threads: int | None) -> int:
    """Pin PyTorch's intra-op threads (and the BLAS pools) so numbers are comparable.

    ``None`` or 0 keeps the current setting. Returns the thread count in force.
    """
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` means CUDA when present, else CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
