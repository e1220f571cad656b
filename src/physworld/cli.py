"""The one ``physworld`` command: each subcommand is a dataclass config, rendered by tyro."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tyro

from physworld.data.collect import CollectConfig, collect
from physworld.demo import DemoConfig, demo


@dataclass
class WorldsConfig:
    """List the worlds with a one-line description and their observation/action spaces."""

    obs: str = "pixels"
    """Observation kind to show the spaces for: pixels or state."""


def list_worlds(cfg: WorldsConfig) -> None:
    import gymnasium as gym

    from physworld.worlds import WORLDS

    for world_id, description in WORLDS.items():
        env = gym.make(world_id, obs=cfg.obs)
        print(f"{world_id}\n  {description}")
        print(f"  observation: {env.observation_space}\n  action:      {env.action_space}")
        env.close()


COMMANDS: dict[str, tuple[type, Callable[[Any], Any]]] = {
    "worlds": (WorldsConfig, list_worlds),
    "collect": (CollectConfig, collect),
    "demo": (DemoConfig, demo),
}


def main(argv: list[str] | None = None) -> None:
    configs = {name: cls for name, (cls, _) in COMMANDS.items()}
    cfg = tyro.extras.subcommand_cli_from_dict(
        configs,
        prog="physworld",
        description="physworld: learn how a physical world moves, then simulate, plan and measure it.",
        args=argv,
    )
    runner = next(run for cls, run in COMMANDS.values() if isinstance(cfg, cls))
    result = runner(cfg)
    if result is not None:
        print(result)


if __name__ == "__main__":
    main()
