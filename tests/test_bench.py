"""physbench as a whole: picking tasks, finding or training each one a model, skipping with a
reason, and the article-shaped results.json and report.html (through the ``physworld`` CLI)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from physworld.cli import main
from physworld.eval.bench import (
    ORDER,
    TASKS,
    BenchConfig,
    report,
    run_bench,
    select_tasks,
)


def test_tasks_are_picked_by_name_and_unknown_names_are_refused(tmp_path: Path):
    assert [t.name for t in select_tasks("all")] == list(ORDER) == sorted(TASKS, key=ORDER.index)
    assert [t.name for t in select_tasks(" causal, stability ,causal")] == ["causal", "stability"]
    with pytest.raises(ValueError, match=r"unknown task\(s\) towers; choose from: all, stability, phyre"):
        select_tasks("stability,towers")
    with pytest.raises(ValueError, match="names no task"):
        select_tasks(",")
    with pytest.raises(SystemExit, match="physworld bench: error: .*choose from"):  # refused before any work
        main(["bench", "--tasks", "nope", "--train", "--out", str(tmp_path / "b")])
    assert not (tmp_path / "b").exists()


def entry(value: float | None, target: str, **extra) -> dict:
    rows = [] if value is None else [{"method": "m", "value": value, "kind": "model"}]
    return {"status": "ran", "rows": rows, "target": target, "details": {}, **extra}


def test_target_met_reads_the_target_in_the_metric_units():
    assert report.target_met(entry(90.0, ">= 90% accuracy")) is True
    assert report.target_met(entry(89.9, ">= 90% accuracy")) is False
    assert report.target_met(entry(0.5, "<= 0.4 SHD")) is False
    assert report.target_met(entry(None, ">= 90%")) is None  # no model row
    assert report.target_met(entry(95.0, "")) is None  # no target
    assert report.target_met(entry(10.0, ">= 90%", details={"target_met": True})) is True  # the task decides
    assert report.target_met({"status": "skipped", "reason": "x"}) is None


@pytest.mark.parametrize("name", ORDER)
def test_every_target_is_read_in_its_metric_units(name: str):
    """Every metric is on a 0-100 scale, so a threshold of 1 or less (F1 >= 0.9) would be met by
    any model: the target's first comparison must be in the metric's units."""
    task = TASKS[name]
    found = report.TARGET.search(task.target)
    assert found is not None and 1.0 < float(found.group(2)) <= 100.0, task.target
    assert report.target_met(entry(float(found.group(2)) - 0.1, task.target)) is False


def test_cli_writes_the_table_and_skips_a_task_without_a_model(tiny_tower, few_towers, tmp_path: Path):
    model, _ = tiny_tower
    path = model.save(tmp_path / "tower-model")
    out = tmp_path / "bench"
    main(["bench", "--model", str(path), "--tasks", "stability,causal", "--quick", "--threads", "1", "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["tasks"] == ["stability", "causal"] and results["settings"]["quick"]
    ran, skipped = results["tasks"]["stability"], results["tasks"]["causal"]
    assert ran["status"] == "ran" and ran["model"]["source"] == "given with --model"
    assert ran["model"]["path"] == str(path) and ran["train_seconds"] is None and ran["wall_seconds"] > 0
    assert {r["kind"] for r in ran["rows"]} == {"model", "baseline", "oracle"}
    model_value = next(r["value"] for r in ran["rows"] if r["kind"] == "model")
    assert ran["target_met"] is (model_value >= 90.0)
    assert skipped["status"] == "skipped" and "Springs-v0" in skipped["reason"] and "--train" in skipped["reason"]
    assert skipped["reference"] and skipped["target"]

    page = (out / "report.html").read_text()
    for column in report.HEADER:  # task | metric | baselines | model | engine oracle | published reference
        assert f"<th>{column}</th>" in page
    assert "Stability (physical reasoning)" in page and "skipped: none of the given models" in page
    assert "context only" in page and "image/gif" in page
    rows = [row for name, e in results["tasks"].items() for row in report.table_rows(name, e)]
    assert all(len(row) == len(report.HEADER) for row in rows)
    assert rows[0][4] == "100.0"  # the engine oracle's column


def test_train_flag_trains_a_model_once_and_reuses_it(tiny_tower_budget, few_towers, monkeypatch, tmp_path: Path):
    monkeypatch.setattr(TASKS["stability"], "budget", lambda quick: tiny_tower_budget)
    cfg = BenchConfig(out=tmp_path, tasks="stability", quick=True, train=True, threads=1)
    first = run_bench(cfg)["tasks"]["stability"]
    assert first["model"]["source"].startswith("trained with --train") and first["train_seconds"] > 0
    (run,) = (tmp_path / "runs").glob("stability-quick-*")
    (data,) = (tmp_path / "data").glob("stability-quick-*")
    again = run_bench(cfg)["tasks"]["stability"]
    assert again["rows"] == first["rows"]  # the same model and questions: the same answers
    assert again["train_seconds"] < first["train_seconds"]

    # a changed budget trains a new model (on the same data) instead of reusing the old one
    longer = dataclasses.replace(tiny_tower_budget, steps=tiny_tower_budget.steps + 5)
    monkeypatch.setattr(TASKS["stability"], "budget", lambda quick: longer)
    run_bench(cfg)
    assert len(list((tmp_path / "runs").glob("stability-quick-*"))) == 2 and run.is_dir()
    assert list((tmp_path / "data").glob("stability-quick-*")) == [data]


def test_a_task_scored_under_two_protocols_gets_a_line_each():
    rows = [("jepa, within", 60.0, "model"), ("jepa, cross", 30.0, "model"), ("chance, within", 40.0, "baseline"),
            ("chance, cross", 35.0, "baseline"), ("engine, within", 100.0, "oracle"), ("engine, cross", 99.0, "oracle")]
    e = entry(None, ">= 80", title="T", metric="m", reference="ref",
              rows=[{"method": m, "value": v, "kind": k} for m, v, k in rows])
    assert report.table_rows("t", e) == [
        ["T", "m", "chance: 40.0", "60.0 (jepa, within)", "100.0", "ref"],
        ["", "", "chance: 35.0", "30.0 (jepa, cross)", "99.0", ""],
    ]
    skipped = report.table_rows("t", {"status": "skipped", "reason": "no model", "title": "T", "reference": "ref"})
    assert skipped == [["T", "-", "-", "skipped: no model", "-", "ref"]]
