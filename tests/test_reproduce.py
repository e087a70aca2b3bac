"""The table runner: settings, the moderate rule, skipping, resuming, the paper's numbers."""

from __future__ import annotations

import json

import pytest

from bgnet_lite.cli import main as cli_main
from bgnet_lite.reproduce import format_table, paper_values, read_results, run_table
from bgnet_lite.reproduce.specs import (
    CURVE_VARIATIONS,
    curve_setting,
    moderate_variation,
    resolve_setting,
)
from bgnet_lite.train import loop as loop_module


def curve_cells(s2_ious: dict[float, list[float]]) -> dict:
    """Robustness cells of S2 (and one S5 cell that the rule must ignore)."""
    cells = {}
    for variation, ious in s2_ious.items():
        for seed, iou in enumerate(ious):
            cells[f"S2/v{variation:g}/seed{seed}"] = {
                "method": "bgnet-s2", "setting": f"v{variation:g}", "metrics": {"defect_iou": iou}}
    cells["S5/v1/seed0"] = {"method": "bgnet-s5", "setting": "v1",
                            "metrics": {"defect_iou": 0.99}}
    return cells


def test_curve_settings_parse():
    assert curve_setting("v0.25").variation == 0.25 and curve_setting("v0.25").motion == "all"
    shift = curve_setting("shift-v0.5")
    assert (shift.motion, shift.variation) == ("shift", 0.5)
    assert resolve_setting("strong", None).variation == 1.0
    with pytest.raises(LookupError, match="robustness"):
        resolve_setting("moderate", None)
    assert resolve_setting("pcb-moderate", 0.25).dataset == "deeppcb"


def test_moderate_rule_by_hand():
    # aligned mean 0.40; half of it is 0.20: kept at 0.1 (0.35) and 0.25 (mean 0.21), not 0.5
    ious = {0.0: [0.38, 0.42], 0.1: [0.35, 0.35], 0.25: [0.20, 0.22], 0.5: [0.1, 0.12],
            1.0: [0.01, 0.02]}
    assert moderate_variation(curve_cells(ious)) == 0.25
    # the largest value passing counts, even after a dip
    ious[1.0] = [0.3, 0.3]
    assert moderate_variation(curve_cells(ious)) == 1.0
    # undecided until every grid value has S2 cells of both seeds
    ious[0.5] = [0.1]
    assert moderate_variation(curve_cells(ious)) is None
    assert moderate_variation(curve_cells(ious), seeds=1) == 1.0
    del ious[0.5]
    assert moderate_variation(curve_cells(ious), seeds=1) is None
    assert set(CURVE_VARIATIONS) == {0.0, 0.1, 0.25, 0.5, 1.0}


def test_paper_values_are_the_papers():
    assert paper_values("table1", "S2") == {"miou": 0.7887, "f2": 0.8850}
    assert paper_values("table2", "U-Net")["miou"] == 0.6325
    assert paper_values("table3", "BGNet")["params_mb"] == 47.70
    assert paper_values("table2", "classical AOI") == {}


def test_table_runs_skips_finished_cells_and_prints_beside_the_paper(tmp_path, monkeypatch):
    monkeypatch.setenv("BGNET_HOME", str(tmp_path / "home"))
    root = tmp_path / "results"
    (root / "robustness").mkdir(parents=True)
    curve = {"cells": curve_cells({v: [0.4, 0.4] for v in CURVE_VARIATIONS})}  # moderate 1.0
    (root / "robustness" / "quick.json").write_text(json.dumps(curve))
    lines = []
    results = run_table("table1", "quick", seeds=[0], only=["S2"], progress=False, root=root,
                        log=lines.append)
    assert sorted(results["cells"]) == ["S2/moderate/seed0", "S2/strong/seed0"]
    cell = results["cells"]["S2/moderate/seed0"]
    assert cell["steps"] == 8 and cell["variation"] == 1.0 and cell["metrics"]["pairs"] > 0
    assert cell["train_provenance"]["profile"] == "quick" and "/" not in cell["data"][:1]
    assert set(cell["defect_iou_by_type"]) <= {"base_crush", "base_scratch", "contamination",
                                                "breakage", "wire_count"}
    stored = read_results("table1", "quick", root)
    assert stored["cells"].keys() == results["cells"].keys()
    lines.clear()
    run_table("table1", "quick", seeds=[0], only=["S2"], progress=False, root=root,
              log=lines.append)
    assert all("skipped" in line for line in lines) and len(lines) == 2
    text = format_table(stored)
    assert "(p 0.789)" in text  # the paper's S2 mIoU, labelled


def test_an_interrupted_run_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("BGNET_HOME", str(tmp_path))
    seen = []

    def fake_train(config, progress=True):
        seen.append(config.resume)
        out = tmp_path / "runs" / config.profile / "cell"
        out.mkdir(parents=True, exist_ok=True)
        info = {"train_config": {**config.__dict__, "resume": False}}
        (out / "run.json").write_text(json.dumps(info))  # no "steps": not finished
        (out / "last.pt").write_bytes(b"checkpoint")
        (out / "history.json").write_text("{}")

    monkeypatch.setattr(loop_module, "train", fake_train)
    data = tmp_path / "data"
    loop_module.ensure_run(data, "bgnet-s2", profile="quick", name="cell")
    loop_module.ensure_run(data, "bgnet-s2", profile="quick", name="cell")
    loop_module.ensure_run(data, "bgnet-s2", profile="quick", name="cell", seed=1)
    assert seen == [False, True, False]  # the same run resumes, another setting starts afresh


def test_cli_dry_run_and_unknown_row(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BGNET_HOME", str(tmp_path))
    with pytest.raises(SystemExit, match="matches no row"):
        cli_main(["reproduce", "robustness", "--profile", "quick", "--only", "nothing"])
    assert cli_main(["reproduce", "robustness", "--profile", "quick", "--seeds", "0",
                     "--only", "S2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "S2/v0.25/seed0" in out and "cells to run" in out


def test_chapter_results_fall_back_to_the_committed_cpu_profile(tmp_path):
    from bgnet_lite.reproduce.runner import chapter_results

    results, note = chapter_results("table1", "quick", root=tmp_path)
    assert results["cells"] == {} and "bgnet-lite reproduce table1 --profile quick" in note
    (tmp_path / "table1").mkdir()
    (tmp_path / "table1" / "cpu.json").write_text(json.dumps(
        {"table": "table1", "profile": "cpu", "cells": {"S1/moderate/seed0": {}}}))
    results, note = chapter_results("table1", "quick", root=tmp_path)
    assert results["profile"] == "cpu" and "showing the committed 'cpu' ones" in note
    (tmp_path / "table1" / "quick.json").write_text(json.dumps(
        {"table": "table1", "profile": "quick", "cells": {"S1/moderate/seed0": {}}}))
    results, note = chapter_results("table1", "quick", root=tmp_path)
    assert results["profile"] == "quick" and note.startswith("results of the 'quick' profile")
