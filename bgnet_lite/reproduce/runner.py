"""The table runner: every (row, data setting, seed) cell of a table trained and evaluated
through the registry, finished cells skipped, an interrupted one resumed from its checkpoint,
each result written at once to ``results/<table>/<profile>.json`` (chapters 11-13).

    bgnet-lite reproduce table1 --profile cpu --seeds 0 1 2
    bgnet-lite reproduce robustness --profile cpu --dry-run
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bgnet_lite.data.cache import ensure_deeppcb, ensure_synth
from bgnet_lite.paths import relative_to_home
from bgnet_lite.profiles import get_profile
from bgnet_lite.provenance import REPO_ROOT
from bgnet_lite.reproduce.specs import (
    DEEPPCB_MISALIGN_PER_VARIATION,
    MODERATE_RULE,
    TABLES,
    DataSetting,
    Row,
    TableSpec,
    moderate_variation,
    resolve_setting,
)
from bgnet_lite.train import ensure_run, evaluate_run, save_json
from bgnet_lite.train.runs import read_run_info


@dataclass(frozen=True)
class Cell:
    table: str
    row: Row
    setting: DataSetting
    seed: int

    @property
    def key(self) -> str:
        return f"{self.row.label}/{self.setting.name}/seed{self.seed}"

    @property
    def run_name(self) -> str:
        label = self.row.label.replace(" ", "-").replace("+", "plus")
        return f"{self.table}/{label}-{self.setting.name}-seed{self.seed}"


def results_path(table: str, profile: str, root: Path | None = None) -> Path:
    """``results/<table>/<profile>.json`` of the repository (chapter 11)."""
    return (root or REPO_ROOT / "results") / table / f"{profile}.json"


def read_results(table: str, profile: str, root: Path | None = None) -> dict:
    path = results_path(table, profile, root)
    return json.loads(path.read_text()) if path.is_file() else {"cells": {}}


def chapter_results(table: str, profile: str, root: Path | None = None) -> tuple[dict, str]:
    """What a table's chapter shows (chapters 11-13): the profile's results, else the committed
    ``cpu`` ones (the quick profile of CI reads, it does not train for hours), and a line
    saying which."""
    for name in dict.fromkeys((profile, "cpu")):
        results = read_results(table, name, root)
        if results["cells"]:
            shown = (f"results of the {name!r} profile" if name == profile else
                     f"no {profile!r} results yet: showing the committed {name!r} ones")
            return results, (f"{shown}, {len(results['cells'])} cells "
                             f"(results/{table}/{name}.json)")
    return {"table": table, "profile": profile, "cells": {}}, (
        f"no results yet: run `bgnet-lite reproduce {table} --profile {profile}`")


def current_moderate(profile: str, root: Path | None = None) -> float | None:
    """The moderate variation by the rule, from this profile's robustness results."""
    return moderate_variation(read_results("robustness", profile, root)["cells"])


def table_cells(spec: TableSpec, profile: str, seeds=None, only=None,
                root: Path | None = None, moderate: float | None = None) -> list[Cell]:
    """Every cell of a table, rows in the paper's order (chapter 11).  ``only``: labels or
    method names to keep; ``moderate``: the moderate variation, else the profile's rule."""
    if moderate is None and any("moderate" in name for name in spec.settings):
        moderate = current_moderate(profile, root)
    settings = [resolve_setting(name, moderate) for name in spec.settings]
    rows = [row for row in spec.rows if not only or row.label in only or row.method in only]
    if only and not rows:
        raise ValueError(f"--only {', '.join(only)} matches no row of {spec.name}; its rows: "
                         + ", ".join(row.label for row in spec.rows))
    return [Cell(spec.name, row, setting, seed) for seed in (seeds or spec.seeds)
            for setting in settings for row in rows]


def cell_data(setting: DataSetting, profile: str, seed: int) -> Path:
    """The dataset of a cell, generated or prepared on first use (data seed = cell seed)."""
    if setting.dataset == "deeppcb":
        size = get_profile(profile).image_size
        limit = 20 if profile == "quick" else None
        data = ensure_deeppcb(size, limit=limit,
                              misalign=round(DEEPPCB_MISALIGN_PER_VARIATION
                                             * setting.variation, 4))
        if data is None:
            raise FileNotFoundError("Table 3 needs DeepPCB: set BGNET_DEEPPCB to a copy "
                                    "(chapter 1 says where to get it)")
        return data
    return ensure_synth(profile, variation=setting.variation, seed=seed, motion=setting.motion)


def cell_run(cell: Cell, profile: str, steps: int,
             progress: bool = True) -> tuple[Path, Path]:
    """The trained run of a cell and its data: reused when finished, resumed when
    interrupted, trained otherwise (chapters 8, 11)."""
    data = cell_data(cell.setting, profile, cell.seed)
    # steps named only where they differ from the profile's: the run's recorded configuration
    # then matches runs trained before tables had their own budgets (resumed, not redone)
    settings = {"seed": cell.seed} | ({} if steps == get_profile(profile).steps
                                      else {"steps": steps})
    run = ensure_run(data, cell.row.method, options=cell.row.options, profile=profile,
                     name=cell.run_name, progress=progress, **settings)
    return run, data


def table_run(table: str, label: str, setting: str, seed: int = 0,
              profile: str | None = None, progress: bool = True,
              moderate: float | None = None) -> tuple[Path, Path]:
    """A table's run by row label and setting name, e.g. ``table_run("table1", "S5",
    "moderate")`` (chapter 8 reuses it); ``moderate``: the variation to use, else the
    profile's rule (which must be fixed already)."""
    spec = TABLES[table]
    profile = get_profile(profile).name
    cells = [cell for cell in table_cells(spec, profile, [seed], moderate=moderate)
             if cell.row.label == label and cell.setting.name == setting]
    if not cells:
        raise ValueError(f"{table} has no row {label!r} at setting {setting!r}")
    return cell_run(cells[0], profile, spec.steps_for(profile), progress)


def run_cell(cell: Cell, profile: str, steps: int, progress: bool = True) -> dict:
    """Train (or resume, or reuse) and evaluate one cell on its test split (chapter 11)."""
    run, data = cell_run(cell, profile, steps, progress)
    metrics = evaluate_run(run, data, split="test", per_type=True)
    info = read_run_info(run)
    keep = {key: value for key, value in metrics.items()
            if key not in ("run", "data", "provenance", "options", "method",
                           "defect_iou_by_type")}
    return {"label": cell.row.label, "method": cell.row.method, "options": cell.row.options,
            "setting": cell.setting.name, "dataset": cell.setting.dataset,
            "variation": cell.setting.variation, "motion": cell.setting.motion,
            "seed": cell.seed, "steps": info.get("steps"), "metrics": keep,
            "defect_iou_by_type": metrics["defect_iou_by_type"],
            "params_mb": metrics.get("params_mb"),
            "train_wall_time_s": info.get("wall_time_s"),
            "eval_wall_time_s": metrics.get("eval_wall_time_s"),
            "data": relative_to_home(data), "run": relative_to_home(run),
            "train_provenance": info.get("provenance"),
            "eval_provenance": metrics.get("provenance")}


def run_table(name: str, profile: str | None = None, seeds=None, only=None,
              progress: bool = True, root: Path | None = None,
              log=print) -> dict:
    """Run every unfinished cell of a table, writing the results after each (chapter 11)."""
    spec = TABLES[name]
    profile = get_profile(profile).name
    path = results_path(name, profile, root)
    results = read_results(name, profile, root)
    results.update(table=name, title=spec.title, profile=profile)
    cells = table_cells(spec, profile, seeds, only, root)
    for index, cell in enumerate(cells, 1):
        if cell.key in results["cells"]:
            log(f"[{index}/{len(cells)}] {cell.key}: done, skipped")
            continue
        started = time.time()
        log(f"[{index}/{len(cells)}] {cell.key}: training {cell.row.method} ...")
        results["cells"][cell.key] = run_cell(cell, profile, spec.steps_for(profile), progress)
        metrics = results["cells"][cell.key]["metrics"]
        if name == "robustness":  # the rule and its value, once S2's cells fix it
            results["moderate"] = {"rule": MODERATE_RULE,
                                   "variation": moderate_variation(results["cells"])}
        save_json(path, results)
        log(f"[{index}/{len(cells)}] {cell.key}: defect IoU {metrics['defect_iou']:.3f}, "
            f"mIoU {metrics['miou']:.4f} ({time.time() - started:.0f} s) -> "
            f"{relative_to_home(path)}")
    return results


def iter_pending(name: str, profile: str, seeds=None, only=None,
                 root: Path | None = None) -> Iterator[Cell]:
    done = read_results(name, profile, root)["cells"]
    for cell in table_cells(TABLES[name], profile, seeds, only, root):
        if cell.key not in done:
            yield cell


def _observed_seconds_per_step(profile: str, root: Path | None = None) -> dict[str, float]:
    """Training seconds per step of each method, the median over this profile's finished cells
    of every table (the best estimate of what a pending cell will take)."""
    observed: dict[str, list[float]] = {}
    for name in TABLES:
        for cell in read_results(name, profile, root)["cells"].values():
            if cell.get("steps") and cell.get("train_wall_time_s"):
                observed.setdefault(cell["method"], []).append(
                    cell["train_wall_time_s"] / cell["steps"])
    # the median: cells trained while other jobs shared the cores take several times longer
    return {method: statistics.median(values) for method, values in observed.items()}


def dry_run(name: str, profile: str | None = None, seeds=None, only=None,
            root: Path | None = None, measure: bool = True) -> list[dict]:
    """Every cell of a table with its status and estimated training seconds (chapter 11):
    from finished cells of the same method in this profile, else measured now (two training
    steps on random data; NaN with ``measure=False``)."""
    from bgnet_lite.reproduce.report import measured_seconds_per_step

    spec = TABLES[name]
    profile = get_profile(profile).name
    steps = spec.steps_for(profile)
    done = read_results(name, profile, root)["cells"]
    observed = _observed_seconds_per_step(profile, root)
    plan = []
    for cell in table_cells(spec, profile, seeds, only, root):
        method = cell.row.method
        if cell.key not in done and method not in observed:
            observed[method] = (measured_seconds_per_step(method, profile) if measure
                                else math.nan)
        status = "done" if cell.key in done else "to run"
        plan.append({"cell": cell.key, "method": method, "status": status,
                     "estimate_s": 0.0 if status == "done" else observed[method] * steps})
    return plan
