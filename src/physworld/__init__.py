"""physworld: learned world models of physical environments.

Importing the package registers every world as ``physworld/<Name>-v0`` with Gymnasium, and the
dream (a trained model served as an environment) as ``physworld/Dream-v0``.

It also makes OpenMP threads sleep rather than spin while they wait (``OMP_WAIT_POLICY=PASSIVE``,
unless set already; it only takes effect if torch is imported after physworld): on a shared
machine, spinning threads of a 2-thread run fight every other process for the cores. Measured on
2 cores beside two other busy processes, state-JEPA training ran 3-6 it/s spinning and 23-25
it/s passive (1 thread: 35 it/s).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gymnasium as gym  # noqa: E402

from physworld import worlds as worlds  # noqa: E402, F401  (registers the environments)

if "physworld/Dream-v0" not in gym.registry:  # string entry points: nothing heavy is imported here
    gym.register(
        id="physworld/Dream-v0",
        entry_point="physworld.plan.dream:DreamEnv",
        vector_entry_point="physworld.plan.dream:DreamVectorEnv",
    )

__version__ = "0.1.0"
