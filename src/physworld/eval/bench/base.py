"""What every physbench task shares: its config, its result, the model it needs, and the registry.

A task is a world (registered as ``physworld/<Name>-v0``), a protocol that generates its
questions on the fly from seeds, and a metric scored against the engine's ground truth. It takes
a trained model of any family (through the :class:`~physworld.models.WorldModel` contract and
its state probe) and reports the model beside trivial baselines and the engine oracle, with
published numbers only as labelled context.

A task module defines one :class:`BenchTask` subclass and registers it with :func:`register_task`;
:mod:`physworld.eval.bench` imports every task module, so ``TASKS`` is complete after import.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from physworld.models import WorldModel

RowKind = Literal["model", "baseline", "oracle"]


@dataclass
class BenchConfig:
    """``physworld bench``: the article's table of physical understanding, on physworld's worlds."""

    model: list[Path] = field(default_factory=list)
    """Trained checkpoints (repeatable); each task uses the one trained on its world."""
    out: Path = Path("reports/bench")
    """Folder for results.json, report.html and (with --train) data/ and runs/."""
    train: bool = False
    """Train the default JEPA on each task's world first when no --model fits it (reuses a run
    already in OUT/runs/)."""
    quick: bool = False
    """Every task at a reduced size (data, training, questions): the CI form, under 15 minutes."""
    tasks: str = "all"
    """Comma-separated task names, or all."""
    threads: int = 2
    """CPU threads for PyTorch and the BLAS pools."""
    seed: int = 0
    """Seed of the generated questions (training data uses its own fixed seed)."""


@dataclass
class Row:
    """One line of a task's table: who answered and how well (``metric`` units)."""

    method: str
    value: float
    kind: RowKind
    note: str = ""


@dataclass
class TaskResult:
    """One task's outcome: the headline metric's rows, the other metrics, and report HTML."""

    task: str
    metric: str  # what ``Row.value`` is, e.g. "accuracy (%)"
    rows: list[Row]
    reference: str  # published numbers, as context only (not like for like)
    target: str  # the project's target for the model, e.g. ">= 90%"
    details: dict[str, Any] = field(default_factory=dict)  # every other number, JSON-ready
    sections: list[str] = field(default_factory=list)  # HTML sections for report.html

    def model_value(self) -> float | None:
        return next((r.value for r in self.rows if r.kind == "model"), None)


@dataclass(frozen=True)
class TrainBudget:
    """How ``--train`` makes a model for a task: data from the task's world, then the default JEPA."""

    episodes: int
    steps: int
    obs: Literal["state", "pixels"] = "state"
    policy: str = "random"
    window: int = 10
    probe_steps: int = 1000
    extra: dict[str, Any] = field(default_factory=dict)  # JEPAConfig overrides for this task


class BenchTask:
    """A physbench task. Subclasses set the class attributes and implement :meth:`run`."""

    name: ClassVar[str]  # e.g. "stability"
    title: ClassVar[str]  # e.g. "Stability (physical reasoning)"
    world: ClassVar[str]  # Gymnasium id the model must be trained on
    world_kwargs: ClassVar[dict[str, Any]] = {}  # the task's world settings (training and questions)
    reference: ClassVar[str] = ""
    target: ClassVar[str] = ""

    def budget(self, quick: bool) -> TrainBudget:
        """The data and training ``--train`` uses for this task."""
        raise NotImplementedError

    def run(self, model: WorldModel, cfg: BenchConfig) -> TaskResult:
        """Generate the questions (seeded by ``cfg.seed``, smaller when ``cfg.quick``), answer
        them with ``model``, the baselines and the engine, and score everything."""
        raise NotImplementedError

    def fits(self, model: WorldModel) -> bool:
        """Whether ``model`` was trained on this task's world (and settings)."""
        c = model.config
        return c.world == self.world and all(c.world_kwargs.get(k) == _jsonish(v) for k, v in self.world_kwargs.items())


def digest(settings: dict[str, Any]) -> str:
    """A short stable name for a dict of settings (what a data or run folder was made with)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _jsonish(value: Any) -> Any:
    """A value as it comes back from config.json (tuples become lists)."""
    return json.loads(json.dumps(value))


TASKS: dict[str, BenchTask] = {}


def register_task(cls: type[BenchTask]) -> type[BenchTask]:
    TASKS[cls.name] = cls()
    return cls


def train_for_task(task: BenchTask, cfg: BenchConfig) -> Path:
    """Collect the task's training data and train the default JEPA on it (``--train``).

    Everything lands in ``cfg.out/data/<task>-<size>-<digest>`` and ``cfg.out/runs/<task>-<size>-
    <digest>``, the digests naming what made them (the data's and the whole budget's settings);
    a finished run is reused as it is and an interrupted one resumes, so re-running the bench
    costs nothing twice, and a changed budget trains anew instead of reusing an old model.
    """
    from physworld.data import CollectConfig, DatasetError, EpisodeStore, collect
    from physworld.models import STATE_JEPA, JEPAConfig
    from physworld.train import TrainConfig, train

    budget = task.budget(cfg.quick)
    preset = STATE_JEPA if budget.obs == "state" else {}  # its reconstruction would decode frames
    size = "quick" if cfg.quick else "full"
    collected = {"world": task.world, "world_kwargs": task.world_kwargs, "episodes": budget.episodes,
                 "obs": budget.obs, "policy": budget.policy}
    data = cfg.out / "data" / f"{task.name}-{size}-{digest(collected)}"
    made_with = {"data": collected, "budget": asdict(budget), "preset": preset}
    run = cfg.out / "runs" / f"{task.name}-{size}-{digest(made_with)}"
    try:
        EpisodeStore.open(data, world=task.world)
    except (DatasetError, FileNotFoundError):
        collect(
            CollectConfig(
                world=task.world, episodes=budget.episodes, out=data, policy=budget.policy, obs=budget.obs,
                seed=0, overwrite=True, world_kwargs=json.dumps(task.world_kwargs),
            )
        )
    return train(
        TrainConfig(
            data=str(data), model="jepa", steps=budget.steps, out=str(run),
            threads=cfg.threads, seed=0, probe_steps=budget.probe_steps, warmup=min(100, budget.steps // 10),
            window=budget.window, batch_size=64, jepa=JEPAConfig(**{**preset, **budget.extra}),
        )
    )
