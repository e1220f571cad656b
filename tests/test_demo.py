"""The main job end to end, in its quick form (what CI and a first look run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from physworld.cli import main


@pytest.mark.slow
def test_quick_demo_writes_a_complete_report(tmp_path: Path, capsys):
    main(["demo", "--quick", "--out", str(tmp_path / "demo")])
    report = tmp_path / "demo" / "report.html"
    page = report.read_text()
    for heading in ("Summary", "physworld/Balls-v0", "physworld/Push-v0", "Planning"):
        assert heading in page, f"the report has no {heading!r} section"
    assert "http://" not in page and "https://" not in page, "the report must be self-contained"
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    accuracy = results["eval"]["in_distribution"]["predictors"]
    assert accuracy["engine_oracle"]["accuracy_at_step"][0] == 1.0
    assert 0.0 <= accuracy["model"]["accuracy_at_step"][0] <= 1.0
    assert results["plan"]["controllers"]["cem"]["plan_ms_median"] > 0
    assert str(report.resolve()) in capsys.readouterr().out


def test_demo_refuses_an_unknown_family_before_any_work(tmp_path: Path):
    with pytest.raises(SystemExit, match="physworld demo: error: .*no-such-family"):
        main(["demo", "--quick", "--models", "jepa,no-such-family", "--out", str(tmp_path / "demo")])
    assert not (tmp_path / "demo").exists()


def test_every_subcommand_explains_itself(capsys):
    for command in ("worlds", "collect", "train", "eval", "plan", "demo", "play"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "--" in capsys.readouterr().out


def test_worlds_lists_every_world(capsys):
    main(["worlds"])
    out = capsys.readouterr().out
    for world in ("physworld/Balls-v0", "physworld/Push-v0", "physworld/Platformer-v0"):
        assert world in out
