"""Collection, the episode store and training windows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest

import physworld  # noqa: F401
from physworld.data import CollectConfig, DatasetError, EpisodeStore, Windows, collect


def small(tmp: Path, name: str = "balls", **overrides) -> CollectConfig:
    values = dict(
        world="physworld/Balls-v0", episodes=3, out=tmp / name, max_steps=12, num_envs=2, vector="sync"
    )
    values.update(overrides)
    return CollectConfig(**values)


@pytest.fixture(scope="module")
def push_pixels(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("push")
    return collect(small(tmp, "push", world="physworld/Push-v0", policy="mixed", episodes=4))


def test_round_trip_is_bit_identical_to_replaying_the_engine(push_pixels: Path):
    store = EpisodeStore.open(push_pixels, world="physworld/Push-v0")
    assert len(store.episodes) == 4
    env = gym.make("physworld/Push-v0", obs="pixels", max_steps=12)
    for i, ep in enumerate(store.episodes):
        obs, info = env.reset(seed=store.meta["seed"] + i)
        assert np.array_equal(obs, ep.obs[0]) and np.array_equal(info["state"], ep.states[0])
        for t, action in enumerate(ep.actions):
            obs, _, terminated, truncated, info = env.step(action)
            assert np.array_equal(obs, ep.obs[t + 1]), f"episode {i} step {t}: frames differ"
            assert np.array_equal(info["state"], ep.states[t + 1])
        assert terminated or truncated
    assert store.meta["obs_shape"] == [64, 64, 3] and store.meta["action_dim"] == 2


def test_same_data_whatever_the_number_of_parallel_envs(tmp_path: Path):
    one = EpisodeStore.open(collect(small(tmp_path, "a", num_envs=1, obs="state")))
    two = EpisodeStore.open(collect(small(tmp_path, "b", num_envs=3, vector="async", obs="state")))
    for a, b in zip(one.episodes, two.episodes, strict=True):
        assert np.array_equal(a.obs, b.obs) and np.array_equal(a.states, b.states)
        assert np.array_equal(a.actions, b.actions)


def test_a_relative_output_folder_works(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = collect(small(Path("data"), obs="state"))
    assert path == tmp_path / "data" / "balls"
    assert len(EpisodeStore.open(Path("data") / "balls").episodes) == 3


def test_existing_dataset_is_not_overwritten_unless_asked(tmp_path: Path):
    path = collect(small(tmp_path, obs="state"))
    before = (path / "main_data.hdf5").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        collect(small(tmp_path, obs="state", seed=5))
    assert (path / "main_data.hdf5").read_bytes() == before
    collect(small(tmp_path, obs="state", seed=5, overwrite=True))
    assert EpisodeStore.open(path).meta["seed"] == 5


def test_bad_datasets_get_clear_errors(tmp_path: Path, push_pixels: Path):
    with pytest.raises(DatasetError, match="no dataset folder"):
        EpisodeStore.open(tmp_path / "missing")
    with pytest.raises(DatasetError, match="not from 'physworld/Balls-v0'"):
        EpisodeStore.open(push_pixels, world="physworld/Balls-v0")

    truncated = tmp_path / "truncated"
    shutil.copytree(push_pixels, truncated)
    data = truncated / "main_data.hdf5"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(DatasetError, match="cannot read the episode file"):
        EpisodeStore.open(truncated)

    poisoned = tmp_path / "poisoned"
    shutil.copytree(push_pixels, poisoned)
    with h5py.File(poisoned / "main_data.hdf5", "a") as f:
        f["episode_1/actions"][3, 0] = np.nan
    with pytest.raises(DatasetError, match="episode 1 has NaN or inf in its actions"):
        EpisodeStore.open(poisoned)

    unfinished = tmp_path / "unfinished"
    shutil.copytree(push_pixels, unfinished)
    meta = json.loads((unfinished / "metadata.json").read_text())
    meta["physworld"]["complete"] = False
    (unfinished / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="did not finish"):
        EpisodeStore.open(unfinished)


def test_interrupted_collection_leaves_nothing_that_loads(tmp_path: Path, monkeypatch):
    from physworld.data.store import EpisodeWriter

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(EpisodeWriter, "close", crash)
    with pytest.raises(KeyboardInterrupt):
        collect(small(tmp_path, obs="state"))
    assert not (tmp_path / "balls").exists()
    with pytest.raises(DatasetError):
        EpisodeStore.open(tmp_path / "balls.partial")


def test_bad_collect_arguments(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown world"):
        collect(small(tmp_path, world="physworld/Nope-v0"))
    with pytest.raises(ValueError, match="at least 1"):
        collect(small(tmp_path, episodes=0))
    with pytest.raises(ValueError, match="JSON"):
        collect(small(tmp_path, world_kwargs="{n_balls: 3"))


def test_windows_shapes_shards_and_resume(push_pixels: Path):
    windows = Windows(EpisodeStore.open(push_pixels), length=4)
    batch = next(windows.batches(batch_size=5, seed=1))
    assert batch["obs"].shape == (5, 5, 3, 64, 64) and batch["obs"].dtype.is_floating_point is False
    assert batch["actions"].shape == (5, 4, 2) and batch["states"].shape == (5, 5, 6 * 2)

    # each window's frames are consecutive frames of one episode: states match obs times
    store = windows.store
    ep = store.episodes[0]
    first = windows.gather(np.array([0]))
    assert np.array_equal(first["obs"][0].permute(0, 2, 3, 1).numpy(), ep.obs[:5])
    assert np.array_equal(first["actions"][0].numpy(), ep.actions[:4])

    rank0 = next(windows.batches(4, seed=2, rank=0, world_size=2))
    rank1 = next(windows.batches(4, seed=2, rank=1, world_size=2))
    assert not np.array_equal(rank0["states"].numpy(), rank1["states"].numpy())

    stream = windows.batches(3, seed=3)
    for _ in range(7):
        next(stream)
    resumed = next(windows.batches(3, seed=3, start=7))
    assert np.array_equal(next(stream)["states"].numpy(), resumed["states"].numpy())

    with pytest.raises(DatasetError, match="no episode has 500 steps"):
        Windows(store, length=500)
