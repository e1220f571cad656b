"""physworld: learned world models of physical environments.

Importing the package registers every world as ``physworld/<Name>-v0`` with Gymnasium.
"""

from physworld import worlds as worlds  # noqa: F401  (registers the environments)

__version__ = "0.1.0"
