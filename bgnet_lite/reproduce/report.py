"""Reading a table's results: mean ± std over seeds per row and setting, beside the paper's
numbers (always labelled as the paper's), and the dry-run's time estimate (chapters 11-13)."""

from __future__ import annotations

import math
import statistics
import time

import torch

from bgnet_lite.losses import focal_loss
from bgnet_lite.paper_results import (
    PAPER_TABLE1,
    PAPER_TABLE2,
    PAPER_TABLE2_COLUMNS,
    PAPER_TABLE3,
    PAPER_TABLE3_COLUMNS,
)
from bgnet_lite.profiles import get_profile
from bgnet_lite.reproduce.specs import TABLES


def paper_values(table: str, label: str) -> dict:
    """The paper's numbers for a row (chapter 11): {} where the paper has none."""
    if table == "table1":
        return dict(PAPER_TABLE1.get(label, {}))
    if table == "table2" and label in PAPER_TABLE2:
        return dict(zip(PAPER_TABLE2_COLUMNS, PAPER_TABLE2[label], strict=True))
    if table == "table3" and label in PAPER_TABLE3:
        return dict(zip(PAPER_TABLE3_COLUMNS, PAPER_TABLE3[label], strict=True))
    return {}


def _mean_std(values: list[float]) -> tuple[float, float, int]:
    defined = [v for v in values if v is not None and not math.isnan(v)]
    if not defined:
        return math.nan, math.nan, 0
    spread = statistics.stdev(defined) if len(defined) > 1 else math.nan
    return statistics.fmean(defined), spread, len(defined)


def summarize(results: dict) -> list[dict]:
    """One row per (row label, setting) in the table's order: for every column, its mean, std
    (sample std over seeds; NaN for one seed) and seed count, and the paper's value (ch. 8)."""
    spec = TABLES[results["table"]]
    cells = list(results["cells"].values())
    rows = []
    settings = list(dict.fromkeys(cell["setting"] for cell in cells))
    for row in spec.rows:
        for setting in settings:
            mine = [c for c in cells if c["label"] == row.label and c["setting"] == setting]
            if not mine:
                continue
            summary = {"label": row.label, "method": row.method, "setting": setting,
                       "variation": mine[0]["variation"], "seeds": len(mine),
                       "params_mb": mine[0].get("params_mb"),
                       "train_wall_time_s": sum(c.get("train_wall_time_s") or 0 for c in mine)}
            for column in spec.columns:
                values = [c["metrics"].get(column, c.get(column)) for c in mine]
                summary[column], summary[f"{column}_std"], _ = _mean_std(values)
            summary["paper"] = paper_values(spec.name, row.label)
            rows.append(summary)
    return rows


def plus_minus(mean: float, spread: float, digits: int = 3) -> str | None:
    """"0.612 ± 0.034" (the std left out for one seed); None for a missing value."""
    if mean is None or math.isnan(mean):
        return None
    return f"{mean:.{digits}f}" + ("" if math.isnan(spread) else f" ± {spread:.{digits}f}")


def display_rows(results: dict) -> list[dict]:
    """``summarize`` rows for a chapter's table (chapters 11-13): each column as "mean ± std"
    text, and the paper's value of each column under ``paper_<column>``."""
    spec = TABLES[results["table"]]
    rows = []
    for row in summarize(results):
        shown = {"label": row["label"], "method": row["method"], "setting": row["setting"],
                 "n": row["seeds"], "params_mb": row["params_mb"],
                 "train_wall_time_s": row["train_wall_time_s"]}
        for column in spec.columns:
            shown[column] = plus_minus(row[column], row[f"{column}_std"])
        shown |= {f"paper_{key}": value for key, value in row["paper"].items()}
        rows.append(shown)
    return rows


def rank_agreement(results: dict, setting: str, metric: str = "miou") -> dict:
    """Does our table order the paper's rows as the paper does?  Spearman's rank correlation
    (scipy) between our mean and the paper's value of ``metric``, over the rows both have
    (chapters 12-13)."""
    from scipy.stats import spearmanr

    pairs = [(row[metric], row["paper"][metric]) for row in summarize(results)
             if row["setting"] == setting and metric in row["paper"]
             and not math.isnan(row[metric])]
    if len(pairs) < 3:
        return {"rows": len(pairs), "rho": math.nan, "p_value": math.nan}
    ours, paper = zip(*pairs, strict=True)
    rho, p_value = spearmanr(ours, paper)
    return {"rows": len(pairs), "rho": float(rho), "p_value": float(p_value)}


def format_table(results: dict) -> str:
    """The table as text for the terminal: ours (mean ± std over seeds) and the paper's."""
    spec = TABLES[results["table"]]
    lines = [f"{spec.title} — profile {results['profile']} (ours: mean ± std over seeds; "
             "paper: the paper's reported value on its private data)"]
    header = f"{'row':15s} {'setting':13s} {'n':>2s} " + " ".join(
        f"{column:>17s}" for column in spec.columns)
    lines += [header, "-" * len(header)]
    for row in summarize(results):
        cells = []
        for column in spec.columns:
            mean, std = row[column], row[f"{column}_std"]
            text = "—" if math.isnan(mean) else f"{mean:.3f}" + (
                "" if math.isnan(std) else f" ± {std:.3f}")
            paper = row["paper"].get(column)
            cells.append(f"{text:>17s}")
            if paper is not None:
                cells[-1] = f"{text} (p {paper:.3f})".rjust(17)
        lines.append(f"{row['label']:15s} {row['setting']:13s} {row['seeds']:2d} "
                     + " ".join(cells))
    return "\n".join(lines)


def measured_seconds_per_step(method: str, profile: str, steps: int = 2) -> float:
    """Wall time of one training step of a method at the profile's size and batch, measured
    now on random data (random initialisation; the dry run's fallback estimate)."""
    from bgnet_lite.methods.summary import build_offline

    active = get_profile(profile)
    model = build_offline(method).train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        return 0.0
    optimizer = torch.optim.Adam(parameters, lr=1e-4)
    shape = (active.batch_size, 3, active.image_size, active.image_size)
    template, sample = torch.rand(shape), torch.rand(shape)
    mask = (torch.rand(shape[0], *shape[2:]) > 0.99).float()
    timings = []
    for _ in range(steps + 1):  # the first step warms up
        started = time.perf_counter()
        optimizer.zero_grad()
        focal_loss(model(template, sample), mask).backward()
        optimizer.step()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings[1:])
