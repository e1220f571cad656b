"""physbench: the article's benchmark table, measured on physworld's own worlds.

    physworld bench --model runs/tower/model --out reports/bench      # score given models
    physworld bench --train --quick                                    # train, then score, every task

:func:`run_bench` picks the tasks, finds each one a model (a given checkpoint trained on the
task's world, else with ``--train`` the default JEPA trained on it), runs it, and writes
``results.json`` and ``report.html`` to ``cfg.out``. Every task module is imported here, so
:data:`TASKS` is complete once this package is.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from physworld.eval import html
from physworld.eval.bench import causal, manipulation, permanence, phyre, stability  # noqa: F401  (register)
from physworld.eval.bench.base import (
    TASKS,
    BenchConfig,
    BenchTask,
    Row,
    TaskResult,
    TrainBudget,
    register_task,
    train_for_task,
)
from physworld.eval.bench.report import summary_sections, target_met, task_heading
from physworld.eval.report import versions, write_json
from physworld.eval.run import model_folder
from physworld.models import WorldModel, load_model
from physworld.runtime import set_threads

TITLE = "physbench: physical understanding, measured against the engine"
ORDER = ("stability", "phyre", "causal", "manipulation", "permanence")  # the article's table order


def select_tasks(spec: str) -> list[BenchTask]:
    """``"all"`` or comma-separated names -> tasks, in the order given; unknown names are refused."""
    every = sorted(TASKS, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
    names = every if spec.strip() == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--tasks names no task; choose from: all, {', '.join(every)}")
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; choose from: all, {', '.join(every)}")
    return [TASKS[n] for n in dict.fromkeys(names)]


def load_models(paths: list[Path]) -> list[tuple[Path, WorldModel]]:
    """Every ``--model`` (a checkpoint, or a run folder holding ``model/``), loaded and validated."""
    return [(folder, load_model(folder)) for folder in (model_folder(Path(p)) for p in paths)]


def skip_reason(task: BenchTask, given: int) -> str:
    settings = f" with {task.world_kwargs}" if task.world_kwargs else ""
    none = "none of the given models was" if given else "no --model was"
    return (
        f"{none} trained on {task.world}{settings}; pass one with --model PATH, "
        "or add --train to train the default JEPA on it"
    )


def model_info(path: Path, model: WorldModel, source: str) -> dict[str, Any]:
    c = model.config
    return {
        "path": str(path), "family": c.family, "obs_kind": c.obs_kind, "world": c.world,
        "world_kwargs": c.world_kwargs, "source": source, "parameters": sum(p.numel() for p in model.parameters()),
    }


def result_entry(task: BenchTask, result: TaskResult) -> dict[str, Any]:
    """Everything in the task's result but its HTML, JSON-ready."""
    entry = {k: v for k, v in asdict(result).items() if k != "sections"}
    return {"title": task.title, "world": task.world, "world_kwargs": task.world_kwargs, **entry}


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run the chosen tasks; write ``results.json`` and ``report.html`` into ``cfg.out``.

    ``results.json`` is rewritten after every task, so a failure part-way (which is raised, not
    swallowed) leaves the finished tasks on disk. Returns the results dict.
    """
    threads = set_threads(cfg.threads)
    tasks = select_tasks(cfg.tasks)
    models = load_models(cfg.model)
    out = Path(cfg.out)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "settings": {
            "tasks": [t.name for t in tasks], "quick": cfg.quick, "train": cfg.train, "seed": cfg.seed,
            "threads": threads, "models": [str(p) for p, _ in models], "out": str(out),
        },
        "versions": versions(),
        "tasks": {},
    }
    sections: dict[str, list[str]] = {}
    bar = tqdm(tasks, desc="physbench", unit="task")
    for task in bar:
        bar.set_postfix_str(task.name)
        found = next(((p, m) for p, m in models if task.fits(m)), None)
        train_seconds = None
        if found is not None:
            path, model = found
            source = "given with --model"
        elif cfg.train:
            clock = time.perf_counter()
            path = train_for_task(task, cfg)
            train_seconds = time.perf_counter() - clock
            model, source = load_model(path), f"trained with --train ({'quick' if cfg.quick else 'full'} budget)"
        else:
            reason = skip_reason(task, len(models))
            results["tasks"][task.name] = {"status": "skipped", "title": task.title, "world": task.world,
                                           "reason": reason, "reference": task.reference, "target": task.target}
            tqdm.write(f"physbench: {task.name} skipped: {reason}")
            continue
        clock = time.perf_counter()
        result = task.run(model, cfg)
        entry = {"status": "ran", **result_entry(task, result), "model": model_info(path, model, source),
                 "wall_seconds": time.perf_counter() - clock, "train_seconds": train_seconds}
        entry["target_met"] = target_met(entry)
        results["tasks"][task.name] = entry
        sections[task.name] = result.sections
        results["seconds"] = time.perf_counter() - started
        write_json(out / "results.json", results)
    bar.close()
    results["seconds"] = time.perf_counter() - started
    write_json(out / "results.json", results)
    page = summary_sections(results)
    for name, entry in results["tasks"].items():
        page += [task_heading(name, entry), *sections.get(name, [])]
    report = html.write_page(out / "report.html", TITLE, page)
    for name, entry in results["tasks"].items():
        line = "skipped" if entry["status"] != "ran" else ", ".join(f"{r['method']} {r['value']:.1f}" for r in entry["rows"] if r["kind"] == "model")
        print(f"{name}: {line}")
    print(f"physbench report: {report} (numbers in {out / 'results.json'})")
    return results


def bench(cfg: BenchConfig) -> None:
    """``physworld bench``: run_bench, for the command line (it prints where the report is)."""
    run_bench(cfg)


__all__ = [
    "TASKS",
    "BenchConfig",
    "BenchTask",
    "Row",
    "TaskResult",
    "TrainBudget",
    "bench",
    "register_task",
    "run_bench",
    "select_tasks",
    "train_for_task",
]
