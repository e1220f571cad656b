"""The on-disk episode store: a Minari dataset (HDF5, lossless) plus physworld's own metadata.

A dataset folder holds Minari's ``metadata.json`` and ``main_data.hdf5``. physworld's metadata
(world id and keywords, observation kind, arena size, object names) lives under the
``"physworld"`` key of Minari's metadata, so ``minari`` itself can still read the folder.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

META_KEY = "physworld"
FORMAT_VERSION = 1


class DatasetError(ValueError):
    """A dataset that cannot be used as asked; the message says why and where."""


@dataclass
class Episode:
    obs: np.ndarray  # [T+1, H, W, 3] uint8 or [T+1, S] float32
    actions: np.ndarray  # [T, A] float32
    states: np.ndarray  # [T+1, S] float32, the engine's ground truth
    rewards: np.ndarray  # [T] float32
    terminated: bool = False  # ended by the world (e.g. success), not by the step limit
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # other per-step infos (goal, ...)

    def __len__(self) -> int:
        return len(self.actions)


@dataclass
class EpisodeStore:
    """All episodes of one dataset, held in memory (physworld's datasets are small)."""

    path: Path
    meta: dict[str, Any]
    episodes: list[Episode]

    @property
    def world(self) -> str:
        return self.meta["world"]

    @property
    def total_steps(self) -> int:
        return sum(len(e) for e in self.episodes)

    def split(self, val_fraction: float = 0.1, seed: int = 0) -> tuple[EpisodeStore, EpisodeStore]:
        """Split by episode (never by window, so no frame is in both halves)."""
        n = len(self.episodes)
        if n < 2:
            raise DatasetError(f"{self.path}: need at least 2 episodes to split, found {n}")
        order = np.random.default_rng(seed).permutation(n)
        n_val = min(n - 1, max(1, round(n * val_fraction)))
        pick = lambda ids: [self.episodes[i] for i in sorted(ids)]  # noqa: E731
        return (
            EpisodeStore(self.path, self.meta, pick(order[n_val:])),
            EpisodeStore(self.path, self.meta, pick(order[:n_val])),
        )

    @classmethod
    def open(cls, path: str | os.PathLike, world: str | None = None) -> EpisodeStore:
        """Load and validate a dataset; ``world`` (if given) must be the world it came from."""
        return _read(Path(path), world)


def _require(condition: bool, path: Path, message: str) -> None:
    if not condition:
        raise DatasetError(f"{path}: {message}")


def _read(path: Path, world: str | None) -> EpisodeStore:
    from minari.dataset.minari_storage import MinariStorage

    _require(path.is_dir(), path, "no dataset folder here")
    partial = path.with_name(path.name + ".partial")
    _require(
        (path / "metadata.json").is_file(),
        path,
        "no metadata.json: not a dataset"
        + (" (an interrupted collection left a .partial folder beside it)" if partial.exists() else ""),
    )
    try:
        raw = json.loads((path / "metadata.json").read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: metadata.json is corrupt ({err})") from err
    meta = raw.get(META_KEY)
    _require(isinstance(meta, dict), path, "not a physworld dataset (no physworld metadata)")
    _require(meta.get("complete") is True, path, "the collection that wrote it did not finish")
    if world is not None and meta["world"] != world:
        raise DatasetError(f"{path}: dataset is from {meta['world']!r}, not from {world!r}")
    try:
        storage = MinariStorage.read(path)
        episodes = [_episode(ep, path) for ep in storage.get_episodes(range(storage.total_episodes))]
    except DatasetError:
        raise
    except Exception as err:  # h5py / minari raise OSError, KeyError, ... on damaged files
        raise DatasetError(f"{path}: cannot read the episode file ({type(err).__name__}: {err})") from err
    _require(len(episodes) > 0, path, "the dataset holds no episodes")
    _require(
        len(episodes) == meta["episodes"],
        path,
        f"expected {meta['episodes']} episodes, found {len(episodes)} (truncated?)",
    )
    for i, ep in enumerate(episodes):
        _check_episode(ep, meta, path, i)
    return EpisodeStore(path, meta, episodes)


def _episode(raw: dict, path: Path) -> Episode:
    infos = raw.get("infos") or {}
    _require("state" in infos, path, f"episode {raw['id']} has no ground-truth states")
    extras = {k: np.asarray(v) for k, v in infos.items() if k != "state" and not isinstance(v, dict)}
    return Episode(
        obs=np.asarray(raw["observations"]),
        actions=np.asarray(raw["actions"], dtype=np.float32),
        states=np.asarray(infos["state"], dtype=np.float32),
        rewards=np.asarray(raw["rewards"], dtype=np.float32),
        terminated=bool(raw["terminations"][-1]),
        extras=extras,
    )


def _check_episode(ep: Episode, meta: dict, path: Path, index: int) -> None:
    where = f"episode {index}"
    t = len(ep.actions)
    _require(t > 0, path, f"{where} is empty")
    _require(
        len(ep.obs) == t + 1 and len(ep.states) == t + 1,
        path,
        f"{where}: {len(ep.obs)} observations and {len(ep.states)} states for {t} actions (want T+1)",
    )
    _require(
        tuple(ep.obs.shape[1:]) == tuple(meta["obs_shape"]),
        path,
        f"{where}: observation shape {ep.obs.shape[1:]} != {tuple(meta['obs_shape'])}",
    )
    _require(
        ep.actions.shape[1:] == (meta["action_dim"],),
        path,
        f"{where}: action shape {ep.actions.shape[1:]} != ({meta['action_dim']},)",
    )
    _require(
        ep.states.shape[1:] == (meta["state_dim"],),
        path,
        f"{where}: state shape {ep.states.shape[1:]} != ({meta['state_dim']},)",
    )
    for name, arr in (("observations", ep.obs), ("actions", ep.actions), ("states", ep.states)):
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise DatasetError(f"{path}: {where} has NaN or inf in its {name}")


class EpisodeWriter:
    """Writes episodes into ``out.partial`` and renames it to ``out`` only when complete.

    An interrupted collection therefore never leaves a folder that loads as a dataset, and an
    existing dataset at ``out`` is replaced only once the new one is whole.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        observation_space: gym.Space,
        action_space: gym.Space,
        meta: dict[str, Any],
        overwrite: bool = False,
    ):
        from minari.dataset.minari_storage import MinariStorage

        self.out = Path(out).absolute()  # Minari joins a relative path with itself
        if self.out.exists() and not overwrite:
            raise FileExistsError(f"{self.out} already exists (pass --overwrite to replace it)")
        self.partial = self.out.with_name(self.out.name + ".partial")
        shutil.rmtree(self.partial, ignore_errors=True)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.storage = MinariStorage.new(
            self.partial,
            observation_space=observation_space,
            action_space=action_space,
            data_format="hdf5",
            jpeg_encoding=False,  # Minari's default is lossy JPEG: never for physics data
        )
        self.meta = {"format_version": FORMAT_VERSION, **meta, "complete": False}
        self._buffer: list = []

    def add(self, episode: Episode, seed: int) -> None:
        from minari.data_collector import EpisodeBuffer

        steps = len(episode)
        infos = {"state": episode.states, **episode.extras}
        self._buffer.append(
            EpisodeBuffer(
                seed=seed,
                observations=episode.obs,
                actions=episode.actions,
                rewards=episode.rewards.tolist(),
                terminations=[False] * (steps - 1) + [episode.terminated],
                truncations=[False] * (steps - 1) + [not episode.terminated],
                infos=infos,
            )
        )
        if len(self._buffer) >= 32:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self.storage.update_episodes(self._buffer)
            self._buffer = []

    def close(self) -> Path:
        self.flush()
        episodes = self.storage.total_episodes
        self.storage.update_metadata({META_KEY: {**self.meta, "episodes": episodes, "complete": True}})
        old = self.out.with_name(self.out.name + ".old")
        if self.out.exists():
            shutil.rmtree(old, ignore_errors=True)
            self.out.rename(old)
        self.partial.rename(self.out)
        shutil.rmtree(old, ignore_errors=True)
        return self.out


def stack_infos(infos: Iterable[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per-step info dicts -> per-key arrays, keeping fixed-shape numeric values only."""
    infos = list(infos)
    out = {}
    for key, value in infos[0].items():
        if isinstance(value, dict | str) or value is None:
            continue
        arr = np.asarray(value)
        if arr.dtype.kind in "biuf":
            out[key] = np.stack([np.asarray(i[key]) for i in infos])
    return out
