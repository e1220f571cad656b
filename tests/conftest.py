"""Fixtures shared by the test files: tiny physbench models, trained once per session."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from physworld.eval.bench.base import BenchConfig, BenchTask, TrainBudget, train_for_task
from physworld.models import WorldModel, load_model

TinyTrainer = Callable[[BenchTask, TrainBudget], tuple[WorldModel, BenchConfig]]
ModelCopier = Callable[..., WorldModel]


@pytest.fixture
def copy_model(tmp_path_factory: pytest.TempPathFactory) -> ModelCopier:
    """``copy_model(model, unfitted_probe=False, **config) -> WorldModel``: ``model`` saved and
    loaded back as an independent copy, with ``config`` fields replaced (a model of another
    world, other settings...) and optionally its probe marked unfitted: what a bench task must refuse."""

    def make(model: WorldModel, unfitted_probe: bool = False, **config: Any) -> WorldModel:
        other = load_model(model.save(tmp_path_factory.mktemp("copy") / "m"))
        other.config = replace(other.config, **config)
        if unfitted_probe:
            other.probe.fitted.fill_(False)
        return other

    return make


@pytest.fixture(scope="session")
def train_tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyTrainer:
    """``train_tiny(task, budget) -> (model, cfg)``: ``task``'s default JEPA trained through the
    bench's own ``--train`` path, on a tiny budget, so a task's ``run`` can be tested in seconds.

    Models are cached by task name, so test files that need the same world share one.
    """
    cache: dict[str, tuple[WorldModel, BenchConfig]] = {}

    def train(task: BenchTask, budget: TrainBudget) -> tuple[WorldModel, BenchConfig]:
        if task.name not in cache:
            tiny = copy.copy(task)
            tiny.budget = lambda quick: budget  # the task's world and settings, a tiny budget
            cfg = BenchConfig(out=tmp_path_factory.mktemp(task.name), quick=True, threads=1)
            cache[task.name] = load_model(train_for_task(tiny, cfg)), cfg
        return cache[task.name]

    return train


@pytest.fixture(scope="session")
def tiny_tower_budget() -> TrainBudget:
    """The tiny budget of the stability task's Tower world (test_bench_stability, test_bench)."""
    return TrainBudget(episodes=6, steps=20, probe_steps=30, extra={"latent_dim": 16})


@pytest.fixture(scope="session")
def tiny_tower(train_tiny: TinyTrainer, tiny_tower_budget: TrainBudget) -> tuple[WorldModel, BenchConfig]:
    """A tiny JEPA of the Tower world, trained on that budget."""
    from physworld.eval.bench.stability import Stability

    return train_tiny(Stability(), tiny_tower_budget)


@pytest.fixture
def few_towers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stability task at 12 towers (and 12 for the majority class, 40 for the readout), so a
    run takes seconds."""
    from physworld.eval.bench import stability

    monkeypatch.setattr(stability, "QUESTIONS", {True: 12, False: 12})
    monkeypatch.setattr(stability, "READOUT_TOWERS", {True: 40, False: 40})
    monkeypatch.setattr(stability, "MAJORITY_SEEDS", range(5_000_000, 5_000_012))
