"""The Platformer world: moves, gravity, pushable boxes, per-seed layouts, the explorer.

(Gymnasium's ``check_env``, seeding and ``render_state`` are covered for every world,
this one included, by tests/test_worlds.py.)
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import physworld  # noqa: F401  (registers the worlds)
from physworld.data import CollectConfig, EpisodeStore, collect
from physworld.worlds.platformer import (
    ACTION_NAMES,
    JUMP,
    LEFT,
    NOOP,
    RIGHT,
    Platformer,
    action_index,
    move_ceiling,
)


def settled(seed: int = 0, **kwargs) -> Platformer:
    """A Platformer a few no-op steps after reset, the character on the floor."""
    env = Platformer(obs="state", n_platforms=0, n_boxes=0, **kwargs)
    env.reset(seed=seed)
    for _ in range(3):
        env.step(Platformer.one_hot(NOOP))
    return env


def test_registered_with_a_choice_action_space():
    env = gym.make("physworld/Platformer-v0")
    assert env.action_space == gym.spaces.Box(0.0, 1.0, (4,), np.float32)
    assert env.unwrapped.ACTION_NAMES == ACTION_NAMES == ("noop", "left", "right", "jump")
    obs, info = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert env.unwrapped.object_names[0] == "character" and info["state"].shape == (3 * 6,)
    assert set(info) >= {"state", "params", "grounded"}


def test_action_index_and_one_hot():
    assert [int(action_index(Platformer.one_hot(k))) for k in range(4)] == [0, 1, 2, 3]
    assert action_index(np.array([[0.2, 0.9, 0.1, 0.3], [0.0, 0.0, 0.0, 0.0]])).tolist() == [
        LEFT,
        NOOP,
    ]
    with pytest.raises(ValueError, match="move"):
        Platformer.one_hot(4)


def test_moves_have_their_effect():
    env = settled()
    x0, y0 = env._state[:2]
    assert env.grounded()
    s, *_ = env.step(Platformer.one_hot(LEFT))
    assert s[0] < x0 - 0.3 and abs(s[1] - y0) < 0.05
    s2, *_ = env.step(Platformer.one_hot(RIGHT))
    assert s2[0] > s[0] + 0.2  # the first substep still carries the old velocity
    s3, *_ = env.step(Platformer.one_hot(NOOP))
    assert abs(s3[0] - s2[0]) < 0.05 and s3[2] == pytest.approx(0.0, abs=0.1)
    s4, *_ = env.step(Platformer.one_hot(JUMP))
    assert s4[1] > y0 + 0.5 and s4[3] > 0 and not env.grounded()


def test_no_jump_in_the_air_and_gravity_brings_it_down():
    env = settled()
    env.step(Platformer.one_hot(JUMP))
    vy_before = env._state[3]
    s, *_ = env.step(Platformer.one_hot(JUMP))  # in the air: no second launch
    assert s[3] < vy_before
    for _ in range(30):
        s, *_ = env.step(Platformer.one_hot(NOOP))
    assert env.grounded() and s[1] < 0.6


def test_character_pushes_a_box():
    env = Platformer(obs="state", n_platforms=0, n_boxes=1)
    for seed in range(20):  # find a scene with the box to the right of the character
        _, info = env.reset(seed=seed)
        if info["state"][6] > info["state"][0] + 1.5:
            break
    box_x0 = env._state[6]
    for _ in range(25):
        s, *_ = env.step(Platformer.one_hot(RIGHT))
    assert s[6] > box_x0 + 0.5  # pushed along
    assert s[0] < s[6]  # never through it


def test_layouts_and_colours_vary_with_the_seed():
    env = Platformer()
    frames, platforms = [], set()
    for seed in range(6):
        obs, info = env.reset(seed=seed)
        frames.append(obs)
        platforms.add(info["params"]["platforms"])
        assert 2 <= info["params"]["n_platforms"] <= 3
    assert len(platforms) == 6
    assert len({tuple(f[32, 32]) for f in frames}) > 1  # background colour changes
    again, _ = env.reset(seed=3)
    assert np.array_equal(again, frames[3])


def test_everything_stays_in_the_arena():
    env = gym.make("physworld/Platformer-v0", obs="state", max_steps=300)
    env.action_space.seed(0)
    env.reset(seed=0)
    for _ in range(300):
        s, *_ = env.step(env.action_space.sample())
        pos = s.reshape(-1, 6)[:, :2]
        assert ((pos > -0.2) & (pos < 10.2)).all()


def test_explorer_moves_are_always_effective():
    env = Platformer(obs="state")
    counts = np.zeros(4, int)
    for seed in range(3):
        env.reset(seed=seed)
        for _ in range(100):
            grounded, x = env.grounded(), env._state[0]
            move = int(action_index(env.expert_action()))
            counts[move] += 1
            assert move != JUMP or grounded
            assert not (move == LEFT and x < 0.6) and not (move == RIGHT and x > 9.4)
            env.step(Platformer.one_hot(move))
    assert (counts > 0).all()


def test_explorer_is_deterministic_per_seed():
    def moves(seed: int) -> list[int]:
        env = Platformer(obs="state")
        env.reset(seed=seed)
        out = []
        for _ in range(40):
            a = env.expert_action()
            out.append(int(action_index(a)))
            env.step(a)
        return out

    assert moves(5) == moves(5) and moves(5) != moves(6)


def test_collect_with_the_explorer(tmp_path):
    path = collect(
        CollectConfig(
            world="physworld/Platformer-v0",
            episodes=2,
            out=tmp_path / "pf",
            policy="expert",
            max_steps=12,
            num_envs=1,
            vector="sync",
        )
    )
    store = EpisodeStore.open(path, world="physworld/Platformer-v0")
    ep = store.episodes[0]
    assert ep.obs.shape == (13, 64, 64, 3) and ep.actions.shape == (12, 4)
    assert set(np.unique(ep.actions)) <= {0.0, 1.0} and (ep.actions.sum(1) == 1).all()
    assert store.meta["object_names"][0] == "character"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_boxes=7), "n_boxes"),
        (dict(n_platforms=(1, 4)), "n_platforms"),
        (dict(box_size_range=(1.0, 0.5)), "box_size_range"),
        (dict(jump_speed=-1.0), "jump_speed"),
        (dict(character_radius=2.0), "character_radius"),
        (dict(gravity_range=(0.0, 10.0)), "gravity_range"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Platformer(**kwargs)


def test_move_ceiling_counts_moves_the_frames_cannot_tell_apart():
    """A jump in the air does nothing more than a noop: data with both there caps any classifier."""
    kwargs = dict(image_size=32, n_platforms=0, n_boxes=0)
    moves = [JUMP, NOOP, JUMP, NOOP, JUMP]  # the first launches; the others are in the air
    mixed = move_ceiling([(1, np.stack([Platformer.one_hot(m) for m in moves]))], **kwargs)
    assert mixed == {"ceiling": 3 / 5, "ambiguous": 4 / 5, "transitions": 5.0}
    # The explorer never jumps in the air: the same frames are then always a noop, and it runs.
    moves = [JUMP, NOOP, LEFT, NOOP, RIGHT]
    clean = move_ceiling([(1, np.stack([Platformer.one_hot(m) for m in moves]))], **kwargs)
    assert clean["ceiling"] == 1.0 and clean["ambiguous"] == 2 / 5
