"""The one ``physworld`` command: each subcommand is a dataclass config, rendered by tyro."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tyro

from physworld.data.collect import CollectConfig, collect
from physworld.demo import DemoConfig, demo
from physworld.eval import EvalConfig, evaluate
from physworld.eval.bench import BenchConfig, bench
from physworld.eval.planning import PlanConfig, run_planning
from physworld.train import TrainConfig, parse_config, train


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
    "train": (TrainConfig, train),
    "eval": (EvalConfig, evaluate),
    "plan": (PlanConfig, run_planning),
    "demo": (DemoConfig, demo),
    "bench": (BenchConfig, bench),
}

try:  # the play page needs the [web] extra (FastAPI, uvicorn)
    from physworld.serve import PlayConfig, play

    COMMANDS["play"] = (PlayConfig, play)
except ModuleNotFoundError as err:  # pragma: no cover - depends on the install
    _WEB_MISSING = err.name


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["play"] and "play" not in COMMANDS:
        sys.exit(f"physworld play needs the web extra ({_WEB_MISSING} is missing): pip install 'physworld[web]'")
    if argv[:1] == ["train"]:  # train also reads --config file.yaml as defaults
        cfg: Any = parse_config(argv[1:])
    else:
        cfg = tyro.extras.subcommand_cli_from_dict(
            {name: cls for name, (cls, _) in COMMANDS.items()},
            prog="physworld",
            description="physworld: learn how a physical world moves, then simulate, plan and measure it.",
            args=argv,
        )
    command, runner = next((name, run) for name, (cls, run) in COMMANDS.items() if isinstance(cfg, cls))
    try:
        result = runner(cfg)
    except (ValueError, KeyError, FileNotFoundError) as err:  # bad input: say what, not where
        if os.environ.get("PHYSWORLD_DEBUG"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        sys.exit(f"physworld {command}: error: {message}\n(set PHYSWORLD_DEBUG=1 to see the traceback)")
    if result is not None:
        print(result)


if __name__ == "__main__":
    main()
