"""Ground-truth physical worlds: pymunk scenes behind the Gymnasium API.

Importing this package registers every world as ``physworld/<Name>-v0``; :data:`WORLDS` lists
them with a one-line description (``physworld worlds`` prints it).
"""

from __future__ import annotations

import gymnasium as gym

from physworld.worlds.balls import Balls
from physworld.worlds.base import Look, PhysWorld, object_positions
from physworld.worlds.push import Push

WORLDS: dict[str, str] = {
    "physworld/Balls-v0": "N balls (default 3) of varied size and mass colliding elastically in a box; passive, or push ball 0",
    "physworld/Push-v0": "a disc agent (2-D velocity actions) pushes a rotating square block onto a goal",
    "physworld/Platformer-v0": "a character runs left/right and jumps (4 move scores, argmax) over platforms under gravity, pushing boxes",
    "physworld/Springs-v0": "particles joined by hidden springs (a fixed graph per graph_seed), pushed one at a time; for causal discovery",
    "physworld/Occluder-v0": "a ball rolls behind an occluder; possible/impossible clips for violation-of-expectation",
    "physworld/Tower-v0": "a tower of 2-6 blocks with random offsets stands or falls under gravity (passive; physbench stability)",
    "physworld/MiniPhyre-v0": "place a red ball so that, under gravity, the green ball comes to touch the blue one (6 scene templates; physbench Mini-PHYRE)",
}

_ENTRY_POINTS = {
    "physworld/Balls-v0": "physworld.worlds.balls:Balls",
    "physworld/Push-v0": "physworld.worlds.push:Push",
    "physworld/MiniPhyre-v0": "physworld.worlds.phyre:MiniPhyre",
    "physworld/Platformer-v0": "physworld.worlds.platformer:Platformer",
    "physworld/Springs-v0": "physworld.worlds.springs:Springs",
    "physworld/Occluder-v0": "physworld.worlds.occluder:Occluder",
    "physworld/Tower-v0": "physworld.worlds.tower:Tower",
}

# tests/test_worlds.py runs the full `check_env` on every world, so gym.make's passive checker
# is off: it would only repeat those checks and warn on every make that Balls' no-op action
# space Box(0, 0) has equal bounds (which is intended).
for _id, _entry in _ENTRY_POINTS.items():
    if _id not in gym.registry:  # importing twice (e.g. reload) must not warn
        gym.register(id=_id, entry_point=_entry, disable_env_checker=True)


def push_expert_action(env: gym.Env):
    """The Push expert's action for ``env`` (a Push instance, wrapped or not)."""
    return env.unwrapped.expert_action()


__all__ = [
    "WORLDS",
    "Balls",
    "Look",
    "PhysWorld",
    "Push",
    "object_positions",
    "push_expert_action",
]
