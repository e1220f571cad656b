"""Training: one loop for every model family, resumable, DDP-ready.

    from physworld.train import TrainConfig, parse_config, train
    train(parse_config(["--data", "data/balls", "--steps", "2000"]))   # -> runs/jepa/model

``train(cfg)`` opens ``cfg.data`` and trains ``cfg.model``; ``fit(model, windows, cfg)`` is the
loop on any windows-like object. Multi-process / multi-node: see :mod:`physworld.train.distributed`.
"""

from physworld.train.loop import (
    TrainConfig,
    TrainingDiverged,
    build_model,
    fit,
    parse_config,
    read_metrics,
    train,
    training_seconds,
)

__all__ = ["TrainConfig", "TrainingDiverged", "build_model", "fit", "parse_config", "read_metrics", "train", "training_seconds"]
