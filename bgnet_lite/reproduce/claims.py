"""The paper's claims about its Tables 1-3, each checked against our seeds and against the
paper's own numbers (chapters 11-13).

A claim compares rows of one table on one metric: "higher" (every row of ``better`` above every
row of ``worse``) or "similar" (within ``SIMILAR_TOLERANCE``).  One comparison's verdict, from
the per-seed values of the two rows:

- two or more seeds on both sides: the difference of the means against its standard error
  ``se = sqrt(sd_a**2 / n_a + sd_b**2 / n_b)``: "holds" beyond ``2 se`` in the claimed direction,
  "reversed" beyond ``2 se`` the other way, otherwise "within seed noise";
- one seed: the sign, marked "(1 seed)", once the difference exceeds a margin: the median
  difference between two seeds of one cell (``seed_spread`` of chapter 11's curve; else
  ``SIMILAR_TOLERANCE``); a smaller one is "within seed noise (1 seed)";
- the paper's single numbers: the sign alone (what the paper's text reads from them).

A claim with several comparisons gets the weakest of their verdicts, and names that comparison.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from bgnet_lite.reproduce.report import paper_values

SIMILAR_TOLERANCE = 0.02  # "similar" mIoU or F2: at most 2 points apart
NOISE_FACTOR = 2.0  # standard errors a difference must exceed to count
# weakest first: a claim's verdict is the first of these any of its comparisons gets
VERDICT_ORDER = ("reversed", "reversed (1 seed)", "within seed noise",
                 "within seed noise (1 seed)", "holds (1 seed)", "holds")


@dataclass(frozen=True)
class Claim:
    table: str
    text: str  # what the paper says, with where it says it
    metric: str
    better: tuple[str, ...]
    worse: tuple[str, ...]
    kind: str = "higher"  # or "similar"


BACKGROUND_ROWS = ("Siamese U-Net", "DSSSNet", "GWNet", "BGNet")
FOREGROUND_ROWS = ("TGRNet", "PFENet")
PAPER_ROWS = ("U-Net", "FCN", "SegNet", "DeepLabV3+", "PGANet", "CCNet", "DUNet", "DANet",
              "Swin U-Net", "TGRNet", "PFENet", "Siamese U-Net", "DSSSNet", "GWNet", "BGNet")


def _others(*rows: str) -> tuple[str, ...]:
    return tuple(row for row in PAPER_ROWS if row not in rows)


CLAIMS = (
    Claim("table1", "Siamese subtraction beats concatenation: S2 > S1 in mIoU (§4.3: +2.50 %)",
          "miou", ("S2",), ("S1",)),
    Claim("table1", "Self- and cross-attention help: S3 > S2 in mIoU (§4.3)",
          "miou", ("S3",), ("S2",)),
    Claim("table1", "Matching alone adds little mIoU: S4 ≈ S2 (§4.3)",
          "miou", ("S4",), ("S2",), kind="similar"),
    Claim("table1", "... but raises F2 (recall): S4 > S2 in F2 (§4.3)",
          "f2", ("S4",), ("S2",)),
    Claim("table1", "The full model is best: S5 > S1-S4 in mIoU (§4.3)",
          "miou", ("S5",), ("S1", "S2", "S3", "S4")),
    Claim("table1", "The full model has the highest F2: S5 > S1-S4 (§4.3)",
          "f2", ("S5",), ("S1", "S2", "S3", "S4")),
    Claim("table2", "BGNet has the highest mIoU of the 15 methods (§4.4.1)",
          "miou", ("BGNet",), _others("BGNet")),
    Claim("table2", "BGNet has the highest F2 of the 15 methods (Table 2)",
          "f2", ("BGNet",), _others("BGNet")),
    Claim("table2", "Explicit subtraction hardly helps: Siamese U-Net ≈ U-Net in mIoU (§4.4.1)",
          "miou", ("Siamese U-Net",), ("U-Net",), kind="similar"),
    Claim("table2", "Pooling out background motion helps: DSSSNet > Siamese U-Net in mIoU "
          "(§4.4.1)", "miou", ("DSSSNet",), ("Siamese U-Net",)),
    Claim("table2", "Attention removes more background noise: GWNet > DSSSNet in mIoU (§4.4.1)",
          "miou", ("GWNet",), ("DSSSNet",)),
    Claim("table2", "Foreground generalization is worst: TGRNet and PFENet below every other "
          "method in mIoU (§4.4.1)", "miou", _others(*FOREGROUND_ROWS), FOREGROUND_ROWS),
    Claim("table3", "BGNet has the highest mIoU of the 15 methods (§4.4.2)",
          "miou", ("BGNet",), _others("BGNet")),
    Claim("table3", "Siamese U-Net and GWNet outperform DSSSNet in mIoU (§4.4.2)",
          "miou", ("Siamese U-Net", "GWNet"), ("DSSSNet",)),
    Claim("table3", "Foreground generalization performs the poorest: TGRNet and PFENet below "
          "every other method in mIoU (§4.4.2)", "miou", _others(*FOREGROUND_ROWS),
          FOREGROUND_ROWS),
)


def compare(better: list[float], worse: list[float], kind: str = "higher",
            single_mark: str = " (1 seed)", margin: float = SIMILAR_TOLERANCE) -> str:
    """The verdict of one comparison from per-seed values (the rules in the module doc);
    ``single_mark=""``: the paper's numbers (the sign alone); ``margin``: the one-seed
    margin."""
    difference = statistics.fmean(better) - statistics.fmean(worse)
    if len(better) < 2 or len(worse) < 2:
        if kind == "similar":
            return ("holds" if abs(difference) <= SIMILAR_TOLERANCE else "reversed") + single_mark
        if single_mark and abs(difference) <= margin:
            return "within seed noise" + single_mark
        return ("holds" if difference > 0 else "reversed") + single_mark
    error = math.sqrt(statistics.variance(better) / len(better)
                      + statistics.variance(worse) / len(worse))
    if kind == "similar":
        if abs(difference) <= SIMILAR_TOLERANCE:
            return "holds"
        return "reversed" if abs(difference) > SIMILAR_TOLERANCE + NOISE_FACTOR * error \
            else "within seed noise"
    if difference > NOISE_FACTOR * error:
        return "holds"
    return "reversed" if difference < -NOISE_FACTOR * error else "within seed noise"


def _weakest(verdicts: list[tuple[str, float, str]]) -> tuple[str, float, str]:
    """The comparison with the weakest verdict; among equal verdicts the smallest lead."""
    return min(verdicts, key=lambda item: (VERDICT_ORDER.index(item[0]), item[1]))


def check_claim(claim: Claim, values: dict[str, list[float]],
                single_mark: str = " (1 seed)", margin: float = SIMILAR_TOLERANCE) -> dict:
    """A claim against per-row value lists (``{label: [per-seed values]}``): its verdict, the
    weakest comparison, or "not run" while a row has no value."""
    missing = [row for row in claim.better + claim.worse if not values.get(row)]
    if missing:
        return {"verdict": "not run", "weakest": "missing: " + ", ".join(missing)}
    verdicts = []
    for better in claim.better:
        for worse in claim.worse:
            verdict = compare(values[better], values[worse], claim.kind, single_mark, margin)
            relation = "≈" if claim.kind == "similar" else ">"
            mean_b, mean_w = statistics.fmean(values[better]), statistics.fmean(values[worse])
            lead = -abs(mean_b - mean_w) if claim.kind == "similar" else mean_b - mean_w
            verdicts.append((verdict, lead,
                             f"{better} {mean_b:.3f} {relation} {worse} {mean_w:.3f}"))
    verdict, _, weakest = _weakest(verdicts)
    return {"verdict": verdict, "weakest": weakest}


def seed_values(results: dict, setting: str, metric: str) -> dict[str, list[float]]:
    """``{row label: [value of each seed]}`` of one setting of a table's results."""
    values: dict[str, list[float]] = {}
    for cell in results["cells"].values():
        if cell["setting"] == setting:
            value = cell["metrics"].get(metric)
            if value is not None and not math.isnan(value):
                values.setdefault(cell["label"], []).append(value)
    return values


def seed_spread(results: dict, metric: str) -> float:
    """The median difference between the highest and lowest seed of a cell (same row and
    setting), over the cells with two seeds or more; NaN without any (chapter 11)."""
    by_cell: dict[tuple[str, str], list[float]] = {}
    for cell in results["cells"].values():
        value = cell["metrics"].get(metric)
        if value is not None and not math.isnan(value):
            by_cell.setdefault((cell["label"], cell["setting"]), []).append(value)
    spreads = [max(v) - min(v) for v in by_cell.values() if len(v) > 1]
    return statistics.median(spreads) if spreads else math.nan


def verdicts(results: dict, setting: str, margins: dict[str, float] | None = None) -> list[dict]:
    """Every claim of the results' table, at one data setting: ours and the paper's own
    numbers' verdicts side by side (chapters 11-13).  ``margins``: the one-seed margin per
    metric (``seed_spread`` of the curve), else ``SIMILAR_TOLERANCE``."""
    table = results["table"]
    rows = []
    for claim in CLAIMS:
        if claim.table != table:
            continue
        margin = (margins or {}).get(claim.metric, SIMILAR_TOLERANCE)
        if math.isnan(margin):
            margin = SIMILAR_TOLERANCE
        ours = check_claim(claim, seed_values(results, setting, claim.metric), margin=margin)
        paper = {label: [paper_values(table, label)[claim.metric]]
                 for label in claim.better + claim.worse
                 if claim.metric in paper_values(table, label)}
        theirs = check_claim(claim, paper, single_mark="")
        rows.append({"claim": claim.text, "setting": setting, "ours": ours["verdict"],
                     "ours_weakest": ours["weakest"], "paper": theirs["verdict"],
                     "paper_weakest": theirs["weakest"]})
    return rows
