"""Verdicts on the paper's claims (chapters 11-13), checked against hand-computed cases and
against a reading of the paper's own tables."""

import math

import matplotlib

matplotlib.use("Agg")

from bgnet_lite.reproduce.claims import CLAIMS, check_claim, compare, verdicts  # noqa: E402
from bgnet_lite.viz_results import curve_points, plot_robustness  # noqa: E402


def test_compare_by_hand():
    # diff 0.4, se = sqrt(0.01/3 + 0.01/3) = 0.0816: beyond 2 se
    assert compare([0.5, 0.6, 0.7], [0.1, 0.2, 0.3]) == "holds"
    assert compare([0.1, 0.2, 0.3], [0.5, 0.6, 0.7]) == "reversed"
    # diff 0.05, se = sqrt(0.02/2 + 0.02/2) = 0.141: inside 2 se
    assert compare([0.5, 0.7], [0.45, 0.65]) == "within seed noise"
    assert compare([0.5], [0.4]) == "holds (1 seed)"
    assert compare([0.4], [0.5, 0.6]) == "reversed (1 seed)"
    assert compare([0.51], [0.50]) == "within seed noise (1 seed)"  # 0.01 <= 0.02
    assert compare([0.51], [0.50], single_mark="") == "holds"  # the paper's numbers: the sign
    assert compare([0.55], [0.50], margin=0.06) == "within seed noise (1 seed)"
    assert compare([0.50, 0.52], [0.51, 0.53], kind="similar") == "holds"  # 0.01 apart
    # 0.3 apart, se = sqrt(0.0002/2 * 2) = 0.0141: far beyond 0.02 + 2 se
    assert compare([0.80, 0.82], [0.50, 0.52], kind="similar") == "reversed"


def test_claim_takes_its_weakest_comparison():
    claim = next(c for c in CLAIMS if c.text.startswith("The full model is best"))
    values = {"S5": [0.8, 0.8], "S1": [0.5, 0.5], "S2": [0.6, 0.6], "S3": [0.9], "S4": [0.1]}
    result = check_claim(claim, values)
    assert result["verdict"] == "reversed (1 seed)" and "S3 0.900" in result["weakest"]
    assert check_claim(claim, {"S5": [0.8]})["verdict"] == "not run"


def test_paper_numbers_support_every_claim_but_one():
    # read off the paper's Tables 1-3 by hand: every claim in the text agrees with its table
    # except "foreground generalization performs the poorest" on PCBs (TGRNet 0.7068 and
    # PFENet 0.7214 are above U-Net 0.5981, FCN 0.4985 and CCNet 0.4786)
    for table in ("table1", "table2", "table3"):
        for row in verdicts({"table": table, "cells": {}}, "moderate"):
            expected = "reversed" if table == "table3" and "poorest" in row["claim"] else "holds"
            assert row["paper"] == expected, row
            assert row["ours"] == "not run"


def _cell(label, setting, seed, value):
    return {"label": label, "setting": setting, "seed": seed,
            "metrics": {"defect_iou": value}}


def test_seed_spread_is_the_median_cell_spread():
    from bgnet_lite.reproduce.claims import seed_spread

    cells = [_cell("S2", "v0", 0, 0.40), _cell("S2", "v0", 1, 0.30),  # 0.10
             _cell("S2", "v1", 0, 0.50), _cell("S2", "v1", 1, 0.48),  # 0.02
             _cell("S2", "v1", 2, 0.49), _cell("U-Net", "v0", 0, 0.9),  # one seed: left out
             _cell("S5", "v0", 0, 0.2), _cell("S5", "v0", 1, 0.25)]  # 0.05
    results = {"cells": {f"{c['label']}/{c['setting']}/seed{c['seed']}": c for c in cells}}
    assert math.isclose(seed_spread(results, "defect_iou"), 0.05)
    assert math.isnan(seed_spread({"cells": {}}, "defect_iou"))


def test_curve_points_and_plot():
    cells = [_cell("S2", "v0", 0, 0.4), _cell("S2", "v0", 1, 0.2), _cell("S2", "v0.5", 0, 0.1),
             _cell("S2", "shift-v0.5", 0, 0.3), _cell("S2", "v1", 0, math.nan)]
    results = {"cells": {f"{c['label']}/{c['setting']}/seed{c['seed']}": c for c in cells}}
    points = {p["setting"]: p for p in curve_points(results)}
    assert set(points) == {"v0", "v0.5", "shift-v0.5"}  # NaN cells are left out
    assert math.isclose(points["v0"]["mean"], 0.3) and points["v0"]["min"] == 0.2
    assert points["v0"]["max"] == 0.4 and points["v0"]["seeds"] == 2
    assert points["shift-v0.5"]["motion"] == "shift" and points["shift-v0.5"]["variation"] == 0.5
    axis = plot_robustness(results, moderate=0.5)
    assert [line.get_label() for line in axis.get_lines()][0] == "S2"


def test_display_rows_and_rank_agreement_by_hand():
    from bgnet_lite.reproduce.report import display_rows, plus_minus, rank_agreement

    assert plus_minus(0.5, 0.1234) == "0.500 ± 0.123" and plus_minus(0.5, math.nan) == "0.500"
    assert plus_minus(math.nan, math.nan) is None
    # paper's Table 2 mIoU ranks: SegNet 0.3662 < U-Net 0.6325 < FCN 0.6580 < DeepLabV3+ 0.6702;
    # ours swaps the last two: rho = 1 - 6 * (1 + 1) / (4 * (16 - 1)) = 0.8
    ours = {"SegNet": [0.1, 0.2], "U-Net": [0.3], "FCN": [0.6], "DeepLabV3+": [0.5]}
    cells = {}
    for label, values in ours.items():
        for seed, value in enumerate(values):
            cells[f"{label}/moderate/seed{seed}"] = {
                "label": label, "method": label.lower(), "setting": "moderate", "seed": seed,
                "variation": 0.1, "params_mb": 1.0, "train_wall_time_s": 2.0,
                "metrics": {"miou": value}}
    results = {"table": "table2", "profile": "cpu", "cells": cells}
    agreement = rank_agreement(results, "moderate")
    assert agreement["rows"] == 4 and math.isclose(agreement["rho"], 0.8)
    rows = {row["label"]: row for row in display_rows(results)}
    assert rows["SegNet"]["miou"] == "0.150 ± 0.071" and rows["SegNet"]["n"] == 2
    assert rows["U-Net"]["paper_miou"] == 0.6325 and rows["U-Net"]["precision"] is None


def test_plot_table_draws_a_bar_per_row_at_the_seed_mean():
    from bgnet_lite.viz_results import plot_table

    cells = {f"{label}/moderate/seed{seed}": {"label": label, "setting": "moderate",
                                              "metrics": {"miou": value}}
             for label, seed, value in (("U-Net", 0, 0.2), ("U-Net", 1, 0.4), ("BGNet", 0, 0.5))}
    axis = plot_table({"table": "table2", "cells": cells}, "moderate")
    widths = [patch.get_width() for patch in axis.patches]
    assert [tick.get_text() for tick in axis.get_yticklabels()] == ["U-Net", "BGNet"]
    assert math.isclose(widths[0], 0.3) and math.isclose(widths[1], 0.5)
