"""The mask-derivation statistics: tallied over the pairs and printed (chapter 1)."""

from __future__ import annotations

from .config import CLASSES


def _shift_histogram(shifts) -> dict:
    bins = {"0": 0, "1": 0, "2-3": 0, "4-7": 0, "8+": 0}
    for dy, dx in shifts:
        size = max(abs(dy), abs(dx))
        key = "0" if size == 0 else "1" if size == 1 else "2-3" if size <= 3 else \
            "4-7" if size <= 7 else "8+"
        bins[key] += 1
    return bins


class _Tally:
    """Running mask-derivation statistics over the pairs."""

    def __init__(self):
        names = CLASSES[1:]
        self.boxes = {name: 0 for name in names}
        self.empty = {name: 0 for name in names}
        self.pixels = {name: 0.0 for name in names}
        self.share = {name: 0.0 for name in names}
        self.controls = {name: [0, 0, 0] for name in names}  # placed, derived>0, naive>0
        self.controls_missing = 0
        self.global_shifts, self.local_offsets = [], []
        self.splits = {split: 0 for split in ("train", "val", "test")}

    def add(self, result: dict, split: str) -> None:
        info = result["info"]
        self.splits[split] += 1
        global_dy, global_dx = info["global_shift"]
        self.global_shifts.append((global_dy, global_dx))
        for box, pixels, area, (dy, dx) in zip(result["boxes"], info["box_pixels"],
                                               info["box_areas"], info["box_shifts"],
                                               strict=True):
            name = CLASSES[box[4]]
            self.boxes[name] += 1
            self.empty[name] += int(pixels == 0)
            self.pixels[name] += pixels
            self.share[name] += pixels / area
            self.local_offsets.append((dy - global_dy, dx - global_dx))
        self.controls_missing += len(result["boxes"]) - len(result["controls"])
        for box, (derived, naive) in zip(result["controls"], info["controls"], strict=True):
            counts = self.controls[CLASSES[box[4]]]
            counts[0] += 1
            counts[1] += int(derived > 0)
            counts[2] += int(naive > 0)

    def summary(self) -> dict:
        placed, derived, naive = (sum(c[i] for c in self.controls.values()) for i in range(3))
        return {
            "per_split": self.splits,
            "boxes": {
                "per_class": self.boxes,
                "empty_per_class": self.empty,
                "mean_pixels_640": {k: self.pixels[k] / max(n, 1) for k, n in self.boxes.items()},
                "mean_box_share": {k: self.share[k] / max(n, 1) for k, n in self.boxes.items()},
            },
            "controls": {
                "boxes": placed,
                "not_placed": self.controls_missing,
                "derived_nonempty": derived,
                "derived_rate": derived / max(placed, 1),
                "naive_nonempty": naive,
                "naive_rate": naive / max(placed, 1),
                "per_class": {name: {"boxes": c[0], "derived_nonempty": c[1],
                                     "naive_nonempty": c[2]}
                              for name, c in self.controls.items()},
            },
            "global_shift": {
                "histogram_max_abs_px": _shift_histogram(self.global_shifts),
                "pairs_shifted": sum(s != (0, 0) for s in self.global_shifts),
                "max_abs_px": max((max(abs(dy), abs(dx)) for dy, dx in self.global_shifts),
                                  default=0),
            },
            "local_shift": {"histogram_max_abs_px": _shift_histogram(self.local_offsets)},
        }


def format_stats(stats: dict) -> str:
    """The mask-derivation statistics as a printable report (chapter 1)."""
    pairs, boxes, controls = stats["pairs"], stats["boxes"], stats["controls"]
    lines = [
        f"DeepPCB from {stats['source']}",
        f"pairs used: {pairs['used']}  (train {stats['per_split']['train']}, "
        f"val {stats['per_split']['val']}, test {stats['per_split']['test']})",
        f"pairs excluded: {len(pairs['excluded'])}",
    ]
    lines += [f"  {item['pair']}: {item['reason']}" for item in pairs["excluded"]]
    lines.append(f"{'class':<10} {'boxes':>6} {'empty':>6} {'mean px@640':>12} "
                 f"{'share of box':>13} {'controls':>9} {'ctl derived':>12} {'ctl naive':>10}")
    for name in CLASSES[1:]:
        control = controls["per_class"][name]
        lines.append(f"{name:<10} {boxes['per_class'][name]:>6} "
                     f"{boxes['empty_per_class'][name]:>6} "
                     f"{boxes['mean_pixels_640'][name]:>12.1f} "
                     f"{boxes['mean_box_share'][name]:>13.3f} {control['boxes']:>9} "
                     f"{control['derived_nonempty']:>12} {control['naive_nonempty']:>10}")
    total = sum(boxes["per_class"].values())
    total_empty = sum(boxes["empty_per_class"].values())
    lines.append(f"{'all':<10} {total:>6} {total_empty:>6}")
    lines.append(
        f"control boxes: {controls['boxes']} (not placed: {controls['not_placed']}); "
        f"non-empty derived {controls['derived_nonempty']} ({100 * controls['derived_rate']:.1f}%)"
        f", naive in-box difference {controls['naive_nonempty']} "
        f"({100 * controls['naive_rate']:.1f}%)"
    )
    shifts = stats["global_shift"]
    hist = "  ".join(f"{k}px: {v}" for k, v in shifts["histogram_max_abs_px"].items())
    lines.append(f"global shift (max |dy|,|dx|): {hist}; shifted pairs {shifts['pairs_shifted']}"
                 f", max {shifts['max_abs_px']} px")
    local = "  ".join(f"{k}px: {v}"
                      for k, v in stats["local_shift"]["histogram_max_abs_px"].items())
    lines.append(f"per-box refinement beyond the global shift: {local}")
    lines.append(f"wall time: {stats['wall_s']:.1f} s")
    return "\n".join(lines)
