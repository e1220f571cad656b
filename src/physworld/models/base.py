"""The one model contract every family implements, and the registry that names them.

Planners, evaluation, the dream environment and the server use only this contract, so a new
family plugs in everywhere at once.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import shutil
import sys
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import torch
import tyro
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn

from physworld.models import blocks
from physworld.models.probe import SpatialProbe, StateProbe

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


# Fields set from the dataset, not by hand: hidden from tyro's --help.
Data = tyro.conf.Suppress


def check_choice(what: str, value: object, allowed: Collection[str]) -> None:
    """Refuse a name that is not one of ``allowed``, naming the choices (every by-name option)."""
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")


@dataclass
class ModelConfig:
    """What every family needs to know about the data it models; families subclass it."""

    family: Annotated[str, Data] = ""
    obs_kind: Annotated[str, Data] = "pixels"  # "pixels" (uint8 [C, H, W]) or "state" (float32 [S])
    obs_shape: Annotated[tuple[int, ...], Data] = (3, 64, 64)
    action_dim: Annotated[int, Data] = 2
    action_low: Annotated[list[float], Data] = field(default_factory=list)  # bounds trained with
    action_high: Annotated[list[float], Data] = field(default_factory=list)
    state_dim: Annotated[int, Data] = 0  # ground-truth state size the probe reads out (0: no probe)
    world: Annotated[str, Data] = ""  # Gymnasium id of the world the data came from
    world_kwargs: Annotated[dict[str, Any], Data] = field(default_factory=dict)
    arena_size: Annotated[float, Data] = 1.0  # world units; probe errors are reported / arena_size
    probe_input: Annotated[int, Data] = 0  # latent size the state probe reads (0: no probe yet)
    probe_hidden: int = 256  # hidden width of the state probe's MLP (0: a linear probe)
    probe_spatial: bool = True  # a latent that is a map of cells is read by the soft-argmax probe

    def __post_init__(self) -> None:
        self.obs_shape = tuple(self.obs_shape)  # JSON gives lists back

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build from a saved ``config.json``, ignoring keys this version does not know."""
        if "probe_input" in values and "probe_spatial" not in values:  # saved with an MLP probe
            values = {**values, "probe_spatial": False}
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


class WorldModel(nn.Module, PyTorchModelHubMixin):
    """Base class: ``encode``, ``predict``, ``loss``, optional ``decode``, ``surprise``,
    ``encode_context``.

    Shapes: observations ``[B, *obs_shape]``; latents ``[B, D]``; actions ``[B, H, A]``.
    A batch (what ``loss`` takes) is the dict the data loader yields:
    ``obs [B, T+1, *obs_shape]``, ``actions [B, T, A]``, ``states [B, T+1, S]``.
    """

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    config: ModelConfig

    def __init__(self, config: ModelConfig | dict[str, Any]):
        super().__init__()
        # from_pretrained hands the saved config back as a dict: families read ``self.config``.
        self.config = (
            config if isinstance(config, ModelConfig) else self.config_class.from_dict(config)
        )
        if self.config.probe_input:  # a saved model whose probe was attached: rebuild it to load
            self.attach_probe(self.config.probe_input)

    # --- the contract -----------------------------------------------------------------------
    def encode(self, obs: Tensor) -> Tensor:
        raise NotImplementedError

    def predict(self, z: Tensor, actions: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, batch: dict[str, Tensor], step: int = 0) -> dict[str, Tensor]:
        """``{"loss": scalar, **diagnostics}``. ``step`` is the global optimizer step: it seeds
        any randomness that must agree across data-parallel ranks."""
        raise NotImplementedError

    def forward(self, batch: dict[str, Tensor], step: int = 0) -> dict[str, Tensor]:
        """The loss: DistributedDataParallel syncs gradients only through ``forward``."""
        return self.loss(batch, step=step)

    def encode_context(self, obs: Tensor, actions: Tensor) -> Tensor:
        """A clip ``obs [B, T+1, ...]``, ``actions [B, T, A]`` -> the state at its last frame, read
        with the frames before it: a family whose state holds velocity or memory overrides this
        (a single frame shows no velocity). By default, the last frame alone."""
        return self.encode(obs[:, -1])

    def encode_clip(self, obs: Tensor, actions: Tensor) -> Tensor:
        """A clip ``obs [B, T+1, ...]``, ``actions [B, T, A]`` -> the state at each of its frames
        ``[B, T+1, ...]``, each read with the ``context_frames - 1`` frames before it (fewer at
        the clip's start)."""
        k = self.context_frames
        if k == 1:
            return self.encode(obs.flatten(0, 1)).unflatten(0, obs.shape[:2])
        starts = [max(0, t - k + 1) for t in range(obs.shape[1])]
        return torch.stack(
            [self.encode_context(obs[:, s : t + 1], actions[:, s:t]) for t, s in enumerate(starts)], 1
        )

    @property
    def context_frames(self) -> int:
        """Real frames ``encode_context`` needs for a complete state (evaluation starts every
        model from this many); from fewer, the state starts at rest."""
        return 1

    def decode(self, z: Tensor) -> Tensor:
        raise NotImplementedError(
            f"the {self.config.family!r} model has no decoder: it predicts in latent space only"
        )

    @property
    def has_decoder(self) -> bool:
        """Whether ``decode`` works: by default, whether the family overrides it."""
        return type(self).decode is not WorldModel.decode

    @torch.no_grad()
    def surprise(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Per-step prediction error ``[B, T]``: high values flag a violation of expectation.

        ``obs [B, T+1, ...]``, ``actions [B, T, A]``. Families that can condition on the observed
        history score each step's prediction from it (JEPA, RNN, diffusion do); this default, for
        one that cannot, is :meth:`rollout_error`.
        """
        return self.rollout_error(obs, actions)

    @torch.no_grad()
    def rollout_error(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Per-step error ``[B, T]`` of the open-loop rollout from the first frame against the
        encoded clip: how far the clip strays from what the model imagines from its start."""
        z = self.encode_clip(obs, actions)
        pred = self.predict(z[:, 0], actions)
        return (pred - z[:, 1:]).float().pow(2).flatten(2).mean(-1)

    @torch.no_grad()
    def forecast_error(self, obs: Tensor, actions: Tensor, horizon: int) -> Tensor:
        """Per-step error ``[B, T+1-horizon]`` of predicting each frame ``t >= horizon`` from the
        frames seen until ``horizon`` steps before it, the rest imagined open loop: between
        :meth:`surprise` (``horizon=1``) and :meth:`rollout_error` (from the first frame only).

        By default each forecast starts from the state ``encode_clip`` reads at its frame; a
        family that carries memory outside its state (JEPA's recurrent predictors) overrides it.
        """
        blocks.check_horizon(horizon, actions.shape[1])  # before encoding a clip it cannot use
        z = self.encode_clip(obs, actions)
        pred = blocks.forecast_each(self.predict, z, actions, horizon)
        return (pred - z[:, horizon:]).float().pow(2).flatten(2).mean(-1)

    # --- training hooks (no-ops unless a family needs them) ----------------------------------
    def calibrate(self, batch: dict[str, Tensor]) -> None:
        """Fit data-dependent normalisation from a first batch, before a fresh training run."""

    def on_step_end(self) -> None:
        """Called after every optimizer step (e.g. to update an EMA target)."""

    # --- the state probe: how any family is scored against the engine -----------------------
    def attach_probe(self, latent_size: int) -> StateProbe:
        """Give the model an (unfitted) probe reading ``latent_size`` flattened latent values."""
        if not self.config.state_dim:
            raise ValueError("this model was built without a state_dim: there is no state to probe")
        c = self.config
        c.probe_input = latent_size
        cells = self.latent_map()
        if c.probe_spatial and cells is not None:
            self.probe = SpatialProbe(
                latent_size, c.state_dim, cells, c.obs_shape[-1], c.arena_size
            )
        else:
            self.probe = StateProbe(latent_size, c.state_dim, c.probe_hidden)
        return self.probe

    def latent_map(self) -> tuple[int, int, int] | None:
        """``(C, H, W)`` when the latent is a map of local features tiling the frame (read by
        :class:`SpatialProbe`), flattened channel-major; ``None`` for a latent without layout."""
        return None

    def read_state(self, z: Tensor) -> Tensor:
        """Latent ``[B, ...]`` -> estimated ground-truth state ``[B, S]`` through the fitted probe."""
        probe = getattr(self, "probe", None)
        if probe is None:
            raise RuntimeError(
                f"the {self.config.family!r} model has no state probe: fit one with "
                "physworld.models.probe.fit_probe(model, windows)"
            )
        return probe(z.flatten(1))

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
        with atomic_folder(path) as tmp:
            self.save_pretrained(tmp, config=asdict(self.config))
        return Path(path)


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder beside ``path``; when the block succeeds it replaces ``path``.

    If the process dies inside the block, ``path`` is untouched; between the two renames at the
    end, the previous version survives as ``path.old`` (see :func:`recover_folder`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    yield tmp
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def recover_folder(path: str | os.PathLike) -> Path:
    """``path``, or its ``.old`` twin if a crash hit between the two renames of a save."""
    path = Path(path)
    old = path.with_name(path.name + ".old")
    if not path.exists() and old.is_dir():
        old.rename(path)
    return path


MODELS: dict[str, type[WorldModel]] = {}
_SHARED = {"base", "blocks", "critics", "probe"}  # modules of this package that hold no family
_UNAVAILABLE: dict[str, str] = {}  # family module -> the optional package it lacks


def register_model(name: str):
    """Class decorator: make a family resolvable by ``--model NAME``."""

    def wrap(cls: type[WorldModel]) -> type[WorldModel]:
        MODELS[name] = cls
        return cls

    return wrap


def import_families() -> list[str]:
    """Import every family module of ``physworld.models`` (each registers itself); return names.

    Families load on first use rather than with the package, so ``import physworld.models``
    stays light (some families pull in heavy optional extras). A family whose optional extra is
    not installed is skipped and named in :func:`model_class`'s error.
    """
    import physworld.models as package

    for info in pkgutil.iter_modules(package.__path__):
        module = f"{package.__name__}.{info.name}"
        if info.name in _SHARED or info.name.startswith("_") or module in sys.modules:
            continue
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if (err.name or "").startswith("physworld"):
                raise
            _UNAVAILABLE[info.name] = err.name or str(err)
    return sorted(MODELS)


def model_class(name: str) -> type[WorldModel]:
    if name not in MODELS:
        import_families()
    if name not in MODELS:
        missing = "".join(f"; {m} needs {pkg} (not installed)" for m, pkg in _UNAVAILABLE.items())
        raise KeyError(
            f"unknown model family {name!r}; known: {', '.join(sorted(MODELS))}{missing}"
        )
    return MODELS[name]


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> WorldModel:
    """Load any family's checkpoint folder; validates it before touching the weights."""
    path = recover_folder(path)
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
        model = cls.from_pretrained(path, map_location=str(device), strict=True)
    except Exception as err:  # safetensors raises its own types for truncated files
        raise ValueError(f"checkpoint {path}: cannot read {WEIGHTS_FILE} ({err})") from err
    return model.to(device).eval()
