"""The one model contract every family implements, and the registry that names them.

Planners, evaluation, the dream environment and the server use only this contract, so a new
family plugs in everywhere at once.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class ModelConfig:
    """What every family needs to know about the data it models; families subclass it."""

    family: str = ""
    obs_kind: str = "pixels"  # "pixels" (uint8 [C, H, W]) or "state" (float32 [S])
    obs_shape: tuple[int, ...] = (3, 64, 64)
    action_dim: int = 2
    action_low: list[float] = field(default_factory=list)  # the bounds the model was trained with
    action_high: list[float] = field(default_factory=list)
    state_dim: int = 0  # ground-truth state size the probe reads out (0: no probe)
    world: str = ""  # Gymnasium id of the world the data came from
    world_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.obs_shape = tuple(self.obs_shape)  # JSON gives lists back

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build from a saved ``config.json``, ignoring keys this version does not know."""
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


class WorldModel(nn.Module, PyTorchModelHubMixin):
    """Base class: ``encode``, ``predict``, ``loss``, optional ``decode``, ``surprise``.

    Shapes: observations ``[B, *obs_shape]``; latents ``[B, D]``; actions ``[B, H, A]``.
    A batch (what ``loss`` takes) is the dict the data loader yields:
    ``obs [B, T+1, *obs_shape]``, ``actions [B, T, A]``, ``states [B, T+1, S]``.
    """

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    config: ModelConfig

    def __init__(self, config: ModelConfig | dict[str, Any]):
        super().__init__()
        # from_pretrained hands the saved config back as a dict: families read ``self.config``.
        self.config = config if isinstance(config, ModelConfig) else self.config_class.from_dict(config)

    # --- the contract -----------------------------------------------------------------------
    def encode(self, obs: Tensor) -> Tensor:
        raise NotImplementedError

    def predict(self, z: Tensor, actions: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        raise NotImplementedError(
            f"the {self.config.family!r} model has no decoder: it predicts in latent space only"
        )

    @torch.no_grad()
    def surprise(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Per-step prediction error ``[B, T]`` of an open-loop rollout against the encoded clip.

        ``obs [B, T+1, ...]``, ``actions [B, T, A]``; high values flag a violation of expectation.
        """
        b, t1 = obs.shape[:2]
        z = self.encode(obs.flatten(0, 1)).unflatten(0, (b, t1))
        pred = self.predict(z[:, 0], actions)
        return (pred - z[:, 1:]).pow(2).flatten(2).mean(-1)

    # --- helpers every family shares --------------------------------------------------------
    def check_actions(self, actions: Tensor) -> None:
        """Refuse actions of the wrong dimension with a message that names both sizes."""
        if actions.shape[-1] != self.config.action_dim:
            raise ValueError(
                f"action dimension {actions.shape[-1]} does not match the model's "
                f"{self.config.action_dim} (trained on {self.config.world or 'unknown world'})"
            )

    def save(self, path: str | os.PathLike) -> Path:
        """Atomically write ``model.safetensors`` + ``config.json`` to ``path``.

        The folder is written beside the target and renamed into place, so a crash never
        leaves a half-written checkpoint where a good one was.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.save_pretrained(tmp, config=asdict(self.config))
        old = path.with_name(path.name + ".old")
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
        return path


MODELS: dict[str, type[WorldModel]] = {}


def register_model(name: str):
    """Class decorator: make a family resolvable by ``--model NAME``."""

    def wrap(cls: type[WorldModel]) -> type[WorldModel]:
        MODELS[name] = cls
        return cls

    return wrap


def model_class(name: str) -> type[WorldModel]:
    if name not in MODELS:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> WorldModel:
    """Load any family's checkpoint folder; validates it before touching the weights."""
    path = Path(path)
    config_file, weights_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint folder at {path}")
    if not config_file.is_file():
        raise FileNotFoundError(f"checkpoint {path} has no {CONFIG_FILE}")
    if not weights_file.is_file():
        raise FileNotFoundError(f"checkpoint {path} has no {WEIGHTS_FILE}")
    try:
        family = json.loads(config_file.read_text())["family"]
    except (json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"checkpoint {path}: {CONFIG_FILE} is corrupt ({err})") from err
    cls = model_class(family)
    try:
        model = cls.from_pretrained(path, map_location=str(device))
    except Exception as err:  # safetensors raises its own types for truncated files
        raise ValueError(f"checkpoint {path}: cannot read {WEIGHTS_FILE} ({err})") from err
    return model.to(device).eval()
