"""Listing a dataset folder: ``pairs.csv`` or ``template/ sample/ mask/`` sub-folders, the
class names and the deterministic split (chapter 1, "The problem").  Only paths are checked
here; :mod:`.check` opens the files."""

from __future__ import annotations

import csv
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

from ..io import REQUIRED_COLUMNS, SPLITS, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass
class PairRecord:
    """One template/sample(/mask) triplet with its metadata (chapter 1)."""

    template: Path
    sample: Path
    mask: Path | None
    split: str
    flow: Path | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class PairTable:
    """Everything listed in a dataset folder (chapter 1)."""

    root: Path
    records: list[PairRecord]
    class_names: tuple[str, ...]
    notes: list[str]

    @property
    def num_classes(self) -> int:
        """Logit channels a model needs: 1 for background/defect, else one per class name
        (background included): the one meaning of ``num_classes`` in the package."""
        return 1 if len(self.class_names) == 2 else len(self.class_names)


def deterministic_split(key: str) -> str:
    """80/10/10 train/val/test from a CRC32 of ``key`` (stable across runs and machines)
    (chapter 1)."""
    bucket = zlib.crc32(key.encode("utf-8")) % 10
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def read_class_names(root: Path) -> tuple[str, ...]:
    """Class names from ``classes.json`` (background first), else background/defect
    (chapter 1)."""
    path = root / "classes.json"
    if not path.is_file():
        return ("background", "defect")
    try:
        names = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error}); write a list of class names") from error
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) for n in names):
        raise DataError(
            f"{path}: must be a JSON list of at least two class names, background first"
        )
    return tuple(names)


def _list_images(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Images in ``folder`` keyed by file stem, and problems (duplicate stems)."""
    by_stem: dict[str, Path] = {}
    problems = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in by_stem:
            problems.append(
                f"{path}: duplicate name: {by_stem[path.stem].name} has the same stem; "
                "keep one file per pair name"
            )
            continue
        by_stem[path.stem] = path
    return by_stem, problems


def _table_from_folders(root: Path, require_mask: bool) -> tuple[list[PairRecord], list[str]]:
    template_dir, sample_dir, mask_dir = root / "template", root / "sample", root / "mask"
    if not template_dir.is_dir() or not sample_dir.is_dir():
        raise DataError(
            f"{root}: no pairs.csv and no template/ + sample/ folders; put triplets in "
            "template/, sample/, mask/ with matching file names, or write a pairs.csv "
            "with columns template,sample,mask[,split]"
        )
    templates, problems = _list_images(template_dir)
    samples, sample_problems = _list_images(sample_dir)
    problems += sample_problems
    masks: dict[str, Path] = {}
    if mask_dir.is_dir():
        masks, mask_problems = _list_images(mask_dir)
        problems += mask_problems
    elif require_mask:
        problems.append(f"{mask_dir}: folder missing; add a mask/ folder with one mask per sample")
    if not samples:
        problems.append(f"{sample_dir}: empty folder; add sample images (PNG/JPEG)")
    if not templates:
        problems.append(f"{template_dir}: empty folder; add the defect-free template image(s)")
    shared_template = next(iter(templates.values())) if len(templates) == 1 else None
    records = []
    for stem, sample in samples.items():
        template = templates.get(stem, shared_template)
        if template is None:
            problems.append(
                f"{sample}: no template/{stem}.* for this sample; add it, or keep a single "
                "template in template/ to serve every sample"
            )
            continue
        mask = masks.get(stem)
        if mask is None and require_mask and mask_dir.is_dir():
            problems.append(f"{sample}: no mask/{stem}.png for this sample; add its mask")
            continue
        key = str(sample.relative_to(root))
        records.append(PairRecord(template, sample, mask, deterministic_split(key),
                                  meta={"name": stem}))
    for stem, mask in masks.items():
        if stem not in samples:
            problems.append(f"{mask}: mask without sample/{stem}.*; add the sample or remove it")
    if shared_template is None:
        for stem, template in templates.items():
            if stem not in samples:
                problems.append(
                    f"{template}: template without sample/{stem}.*; add the sample or remove it"
                )
    return records, problems


def _escapes(relative: str) -> bool:
    """True for an absolute path or one that climbs out of its folder ("../x", "a/../../x"),
    judged on the text (a link inside the folder is the user's choice)."""
    normal = os.path.normpath(relative.replace("\\", "/"))
    return os.path.isabs(normal) or PureWindowsPath(relative).drive != "" or \
        normal == ".." or normal.startswith("../")


def _table_from_csv(root: Path, require_mask: bool) -> tuple[list[PairRecord], list[str], bool]:
    csv_path = root / "pairs.csv"
    # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is not part of the first column name
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        rows = list(reader)
    needed = [c for c in REQUIRED_COLUMNS if c != "split" and (c != "mask" or require_mask)]
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DataError(
            f"{csv_path}: missing column(s) {', '.join(missing)}; the header must contain "
            "template,sample,mask[,split] (paths relative to the folder)"
        )
    if not rows:
        raise DataError(f"{csv_path}: no rows; add one line per template/sample/mask triplet")
    has_split = "split" in columns
    problems, records, seen = [], [], {}
    for line, row in enumerate(rows, start=2):
        where = f"{csv_path}:{line}"
        sample_rel = (row.get("sample") or "").strip()
        template_rel = (row.get("template") or "").strip()
        mask_rel = (row.get("mask") or "").strip()
        if not sample_rel or not template_rel or (require_mask and not mask_rel):
            problems.append(f"{where}: empty template/sample/mask entry; fill in all three paths")
            continue
        if sample_rel in seen:
            problems.append(
                f"{where}: duplicate sample {sample_rel} (also on line {seen[sample_rel]}); "
                "list each sample once"
            )
            continue
        seen[sample_rel] = line
        split = (row.get("split") or "").strip() if has_split else deterministic_split(sample_rel)
        if split not in SPLITS:
            problems.append(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
            continue
        relative = {"template": template_rel, "sample": sample_rel}
        if mask_rel:
            relative["mask"] = mask_rel
        flow_rel = (row.get("flow") or "").strip()
        if flow_rel:
            relative["flow"] = flow_rel
        outside = [f"{name} {path}" for name, path in relative.items() if _escapes(path)]
        if outside:
            problems.append(
                f"{where}: path(s) outside the dataset folder: {'; '.join(outside)}; paths in "
                "pairs.csv must be relative and stay inside the folder (copy or link the "
                "files into it)"
            )
            continue
        paths = {name: root / path for name, path in relative.items()}
        absent = [f"{name} {path}" for name, path in paths.items() if not path.is_file()]
        if absent:
            problems.append(
                f"{where}: missing counterpart file(s): {'; '.join(absent)}; add them or fix "
                "the path (paths are relative to the dataset folder)"
            )
            continue
        meta = {k: v for k, v in row.items()
                if k not in ("template", "sample", "mask", "split", "flow") and k is not None}
        meta["name"] = Path(sample_rel).stem
        records.append(PairRecord(paths["template"], paths["sample"], paths.get("mask"), split,
                                  paths.get("flow"), meta))
    return records, problems, has_split


def list_pairs(root: str | Path, *, require_mask: bool = True,
               strict: bool = True) -> tuple[PairTable, list[str]]:
    """List the triplets of a dataset folder and the structural problems found (chapter 1).

    With ``strict`` (the default) the first problem raises :class:`DataError`.  Image contents are
    not opened here; :func:`check_dataset` does that.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; pass the dataset folder (with pairs.csv or "
                        "template/ sample/ mask/)")
    if not any(p for p in root.iterdir() if not p.name.startswith(".")):
        raise DataError(f"{root}: empty folder; put pairs.csv or template/, sample/, mask/ in it")
    notes = []
    if (root / "pairs.csv").is_file():
        records, problems, has_split = _table_from_csv(root, require_mask)
        if not has_split:
            notes.append("pairs.csv has no split column: made a deterministic 80/10/10 "
                         "train/val/test split from a hash of each sample path")
    else:
        records, problems = _table_from_folders(root, require_mask)
        notes.append("folder layout: made a deterministic 80/10/10 train/val/test split from a "
                     "hash of each sample path")
    if strict and problems:
        raise DataError(problems[0] + (f" (and {len(problems) - 1} more problem(s); run "
                                       f"`bgnet-lite data check {root}`)"
                                       if len(problems) > 1 else ""))
    return PairTable(root, records, read_class_names(root), notes), problems
