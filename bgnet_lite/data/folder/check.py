"""Opening and checking triplets: every file decoded once, every check applied to the decoded
arrays (chapter 1, "The problem").

:func:`read_pair` is shared by the validator (``bgnet-lite data check``, :func:`check_dataset`)
and by :class:`~bgnet_lite.data.folder.PairDataset`, so a training item is decoded once and
refused with the same message, naming the file, that the validator prints.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..io import SPLITS, DataError, load_flow, read_image
from .table import PairRecord, list_pairs

MAX_SHOWN = 20  # problems listed in one refusal; `data check` lists all


@dataclass
class PairArrays:
    """One decoded triplet: uint8 images ``[H, W(, 3)]``, the mask ``[H, W]`` as stored (None
    without a mask file) and the flow float32 ``[2, H/s, W/s]`` (None without a flow file)
    (chapter 1)."""

    template: np.ndarray
    sample: np.ndarray
    mask: np.ndarray | None
    flow: np.ndarray | None


def _mask_values(mask: np.ndarray) -> np.ndarray:
    """Sorted distinct values; a histogram for uint8 masks (several times faster than
    np.unique's sort, the same result)."""
    if mask.dtype == np.uint8:
        return np.flatnonzero(np.bincount(mask.ravel(), minlength=1))
    return np.unique(mask)


def _check_mask_values(path: Path, mask: np.ndarray, class_names: tuple[str, ...]) -> str | None:
    values = _mask_values(mask)
    if len(class_names) == 2:
        if not (set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}):
            shown = ", ".join(str(v) for v in values[:8])
            return (f"{path}: binary mask has values {shown}; save it with only 0 and 255 "
                    "(e.g. np.where(mask > 127, 255, 0)), or add classes.json for class ids")
    elif values.max() >= len(class_names):
        return (f"{path}: class id {int(values.max())} is out of range: classes.json lists "
                f"{len(class_names)} classes (ids 0..{len(class_names) - 1})")
    return None


def read_pair(record: PairRecord,
              class_names: tuple[str, ...]) -> tuple[PairArrays | None, list[str]]:
    """Decode one triplet (and its flow) once and check it (chapter 1): ``(arrays, problems)``,
    ``arrays`` None when a file cannot be decoded.  Problems come in a fixed order (template and
    sample, their sizes, the mask, the flow), so the first is the same wherever it is reported.
    """
    problems = []
    try:
        template = read_image(record.template)
        sample = read_image(record.sample)
    except DataError as error:
        return None, [str(error)]
    if template.shape[:2] != sample.shape[:2]:
        problems.append(
            f"{record.sample}: size {sample.shape[1]}x{sample.shape[0]} differs from its template "
            f"{record.template} ({template.shape[1]}x{template.shape[0]}); resize one of them"
        )
    mask = None
    if record.mask is not None:
        try:
            mask = read_image(record.mask, kind="mask")
        except DataError as error:
            return None, problems + [str(error)]
        if mask.shape[:2] != sample.shape[:2]:
            problems.append(
                f"{record.mask}: mask size {mask.shape[1]}x{mask.shape[0]} differs from its "
                f"sample {record.sample} ({sample.shape[1]}x{sample.shape[0]}); "
                "masks must have the sample's size"
            )
        else:
            problem = _check_mask_values(record.mask, mask, class_names)
            if problem:
                problems.append(problem)
    flow = None
    if record.flow is not None:
        try:
            flow, _ = load_flow(record.flow, sample.shape[:2])
        except DataError as error:
            problems.append(str(error))
    return PairArrays(template, sample, mask, flow), problems


def check_pair(record: PairRecord, class_names: tuple[str, ...]) -> list[str]:
    """Open one triplet and return its content problems (empty list when fine) (chapter 1)."""
    return read_pair(record, class_names)[1]


def check_dataset(root: str | Path, *, require_mask: bool = True, split: str | None = None,
                  workers: int = 4, progress: bool = False) -> tuple[dict, list[str]]:
    """Validate a dataset folder completely, or one ``split`` of it: every file opened and
    checked (``workers`` threads decode in parallel); return ``(summary, problems)``
    (chapter 1)."""
    try:
        table, problems = list_pairs(root, require_mask=require_mask, strict=False)
    except DataError as error:
        return {}, [str(error)]
    records = [r for r in table.records if split is None or r.split == split]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = pool.map(lambda record: check_pair(record, table.class_names), records)
        for pair_problems in tqdm(found, total=len(records), desc="check files",
                                  disable=not progress, leave=False):
            problems += pair_problems
    splits = {s: sum(r.split == s for r in table.records) for s in SPLITS}
    summary = {
        "root": str(table.root),
        "pairs": len(table.records),
        "templates": len({r.template for r in table.records}),
        "splits": splits,
        "classes": list(table.class_names),
        "with_flow": sum(r.flow is not None for r in table.records),
        "notes": table.notes,
    }
    return summary, problems


def require_valid_dataset(root: str | Path, *, require_mask: bool = True,
                          split: str | None = None, progress: bool = False) -> dict:
    """:func:`check_dataset`, refusing with ONE message that lists every problem (file, what
    is wrong, the fix) before anything is written (chapters 1 and 7)."""
    summary, problems = check_dataset(root, require_mask=require_mask, split=split,
                                      progress=progress)
    if problems:
        shown = "\n  ".join(problems[:MAX_SHOWN])
        more = (f"\n  ... and {len(problems) - MAX_SHOWN} more"
                if len(problems) > MAX_SHOWN else "")
        raise DataError(f"{root}: {len(problems)} problem(s) in the data; nothing was "
                        f"written. Fix them and run again (`bgnet-lite data check {root}` "
                        f"lists them all):\n  {shown}{more}")
    return summary
