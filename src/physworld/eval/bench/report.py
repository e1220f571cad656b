"""physbench's report: the article-shaped table, the targets, then every task's own sections.

The table has one line per model row of each task (task | metric | baselines | model | engine
oracle | published reference). Published numbers sit in their own column, labelled as context:
they come from other tasks and data, so they are never compared with physworld's numbers.
"""

from __future__ import annotations

import re
from typing import Any

from physworld.eval import html

HEADER = ["task", "metric", "baselines", "model", "engine oracle", "published reference (context only)"]
TARGET = re.compile(r"(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)")
COMPARE = {">=": float.__ge__, "<=": float.__le__, ">": float.__gt__, "<": float.__lt__}


def target_met(entry: dict[str, Any]) -> bool | None:
    """Whether the task's model reached its target; ``None`` when it cannot be told.

    A task may decide itself (``details["target_met"]``); otherwise the first comparison in the
    target text (e.g. ``">= 90% accuracy"``) is applied to the first model row's value, so the
    threshold must be written in the metric's own units.
    """
    if entry.get("status") != "ran":
        return None
    decided = entry.get("details", {}).get("target_met")
    if isinstance(decided, bool):
        return decided
    model = next((r["value"] for r in entry["rows"] if r["kind"] == "model"), None)
    found = TARGET.search(entry.get("target", ""))
    if model is None or found is None:
        return None
    return COMPARE[found.group(1)](float(model), float(found.group(2)))


def _rows(entry: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in entry["rows"] if r["kind"] == kind]


def _listing(rows: list[dict[str, Any]], named: bool = True) -> str:
    return "; ".join(f"{r['method']}: {r['value']:.1f}" if named else f"{r['value']:.1f}" for r in rows) or "-"


def _protocol(method: str) -> str | None:
    """A row scored under one of several protocols is named ``"<who>, <protocol>"``."""
    return method.rsplit(", ", 1)[1] if ", " in method else None


def _same_protocol(rows: list[dict[str, Any]], protocol: str | None) -> list[dict[str, Any]]:
    """The rows of ``protocol``, named without it; all rows when none is of that protocol."""
    mine = [{**r, "method": r["method"].rsplit(", ", 1)[0]} for r in rows if protocol and _protocol(r["method"]) == protocol]
    return mine or rows


def table_rows(name: str, entry: dict[str, Any]) -> list[list[str]]:
    """One line per model row (a task may score its model under several protocols, e.g.
    within- and cross-template): each line lists the baselines and oracle of its own protocol."""
    title = entry.get("title", name)
    if entry["status"] != "ran":
        return [[title, "-", "-", f"skipped: {entry['reason']}", "-", entry.get("reference", "") or "-"]]
    models = _rows(entry, "model") or [{"method": "model", "value": float("nan")}]
    several = len(models) > 1
    lines = []
    for i, m in enumerate(models):
        protocol = _protocol(m["method"]) if several else None
        baselines = _listing(_same_protocol(_rows(entry, "baseline"), protocol))
        oracles = _listing(_same_protocol(_rows(entry, "oracle"), protocol), named=False)
        first = i == 0
        lines.append([title if first else "", entry["metric"] if first else "", baselines,
                      f"{m['value']:.1f} ({m['method']})", oracles, entry["reference"] if first else ""])
    return lines


def summary_sections(results: dict[str, Any]) -> list[str]:
    """The table, the targets and how the numbers were made (what report.html opens with)."""
    tasks = results["tasks"]
    s = results["settings"]
    table = [row for name, entry in tasks.items() for row in table_rows(name, entry)]
    targets = []
    for name, entry in tasks.items():
        met = target_met(entry)
        verdict = {True: "met", False: "not met", None: "not scored" if entry["status"] == "ran" else "skipped"}[met]
        model = next((f"{r['value']:.1f}" for r in entry.get("rows", []) if r["kind"] == "model"), "-")
        targets.append([entry.get("title", name), entry.get("target", "") or "-", model, verdict])
    models = ", ".join(f"{n}: {e['model']['path']} ({e['model']['source']})" for n, e in tasks.items() if e["status"] == "ran")
    how = (
        f"{'Quick' if s['quick'] else 'Full'} size, question seed {s['seed']}, {s['threads']} thread(s); "
        f"models: {models or 'none'}. Each task's questions are generated from held-out seeds and scored "
        "against the engine on the same questions; the engine oracle re-runs the engine. Published numbers "
        "come from other tasks and data, so they are context only, never a like-for-like comparison."
    )
    return [
        html.section("physbench: the table", html.table(HEADER, table), html.paragraph(how, note=True)),
        html.section("Targets", html.table(["task", "target", "model", "verdict"], targets)),
    ]


def task_heading(name: str, entry: dict[str, Any]) -> str:
    """What ran for one task: its model, where it came from, and the time it took."""
    if entry["status"] != "ran":
        return html.section(entry.get("title", name), html.paragraph(f"Skipped: {entry['reason']}"))
    m = entry["model"]
    text = (
        f"World {entry['world']}; model {m['path']} ({m['family']}, {m['obs_kind']} observations, "
        f"{m['source']}); questions and scoring took {entry['wall_seconds']:.1f} s"
        + (f", training {entry['train_seconds']:.1f} s" if entry.get("train_seconds") is not None else "")
        + f". Target: {entry['target'] or 'none'}."
    )
    return html.section(f"{entry.get('title', name)}: model and time", html.paragraph(text, note=True))
