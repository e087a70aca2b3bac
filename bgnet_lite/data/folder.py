"""Dataset folders of template/sample/mask triplets: listing, validation, and the torch Dataset
shared by every source (chapter 1, "The problem").

Two layouts are accepted (see ``bgnet_lite/data/io.py`` for the file conventions):

* a folder with ``pairs.csv`` (columns at least ``template,sample,mask``; ``split`` optional; one
  template may serve many samples; extra columns such as ``batch``, ``defect``, ``flow`` kept);
* a folder with ``template/``, ``sample/`` and ``mask/`` holding files with matching names
  (``mask/`` may be absent for prediction).  A single image in ``template/`` serves all.

Masks are binary (0/255, or 0/1) unless the folder has ``classes.json`` (a JSON list of class names,
background first), in which case mask pixels hold class ids ``0 .. K-1``.
Without a ``split`` column a deterministic split is made from a hash of the sample's path.
"""

from __future__ import annotations

import csv
import json
import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .io import REQUIRED_COLUMNS, SPLITS, DataError, load_flow, read_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass
class PairRecord:
    """One template/sample(/mask) triplet with its metadata."""

    template: Path
    sample: Path
    mask: Path | None
    split: str
    flow: Path | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class PairTable:
    """Everything listed in a dataset folder."""

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
    """80/10/10 train/val/test from a CRC32 of ``key`` (stable across runs and machines)."""
    bucket = zlib.crc32(key.encode("utf-8")) % 10
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def read_class_names(root: Path) -> tuple[str, ...]:
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


def _table_from_csv(root: Path, require_mask: bool) -> tuple[list[PairRecord], list[str], bool]:
    csv_path = root / "pairs.csv"
    with open(csv_path, newline="") as handle:
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
        paths = {"template": root / template_rel, "sample": root / sample_rel}
        if mask_rel:
            paths["mask"] = root / mask_rel
        flow_rel = (row.get("flow") or "").strip()
        if flow_rel:
            paths["flow"] = root / flow_rel
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
    """List the triplets of a dataset folder and the structural problems found.

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


def _check_mask_values(path: Path, mask: np.ndarray, class_names: tuple[str, ...]) -> str | None:
    values = np.unique(mask)
    if len(class_names) == 2:
        if not (set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}):
            shown = ", ".join(str(v) for v in values[:8])
            return (f"{path}: binary mask has values {shown}; save it with only 0 and 255 "
                    "(e.g. np.where(mask > 127, 255, 0)), or add classes.json for class ids")
    elif values.max() >= len(class_names):
        return (f"{path}: class id {int(values.max())} is out of range: classes.json lists "
                f"{len(class_names)} classes (ids 0..{len(class_names) - 1})")
    return None


def check_pair(record: PairRecord, class_names: tuple[str, ...]) -> list[str]:
    """Open one triplet and return its content problems (empty list when fine)."""
    problems = []
    try:
        template = read_image(record.template)
        sample = read_image(record.sample)
    except DataError as error:
        return [str(error)]
    if template.shape[:2] != sample.shape[:2]:
        problems.append(
            f"{record.sample}: size {sample.shape[1]}x{sample.shape[0]} differs from its template "
            f"{record.template} ({template.shape[1]}x{template.shape[0]}); resize one of them"
        )
    if record.mask is not None:
        try:
            mask = read_image(record.mask, kind="mask")
        except DataError as error:
            return problems + [str(error)]
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
    if record.flow is not None:
        try:
            load_flow(record.flow, sample.shape[:2])
        except DataError as error:
            problems.append(str(error))
    return problems


def check_dataset(root: str | Path, *, require_mask: bool = True) -> tuple[dict, list[str]]:
    """Validate a dataset folder completely; return ``(summary, problems)``."""
    try:
        table, problems = list_pairs(root, require_mask=require_mask, strict=False)
    except DataError as error:
        return {}, [str(error)]
    for record in table.records:
        problems += check_pair(record, table.class_names)
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


@dataclass
class Augment:
    """Training augmentations that keep template and sample in their own frames.

    Flips are applied to both images together (the correspondence is flipped with them); the
    photometric jitter is drawn independently for each image, as texture varies between a
    template and its samples.  Nothing here ever aligns the two images.
    """

    hflip: float = 0.5
    vflip: float = 0.5
    brightness: float = 0.1
    contrast: float = 0.1


def _to_tensor(image: np.ndarray, channels: int) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0)
    tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)  # [C, H, W]
    if tensor.shape[0] == 1 and channels == 3:
        tensor = tensor.expand(3, -1, -1).clone()
    elif tensor.shape[0] == 3 and channels == 1:
        tensor = tensor.mean(0, keepdim=True)
    return tensor


def _split_of(record: PairRecord, column: str) -> str:
    """The record's split in ``column`` (e.g. the OCD-like set's ``split_inbatch``)."""
    if column == "split":
        return record.split
    if column not in record.meta:
        raise DataError(f"no column {column!r} in the dataset's pairs.csv")
    return record.meta[column]


class PairDataset(Dataset):
    """The one torch Dataset for synthetic, DeepPCB and user folders (chapter 1).

    Each item is a dict: ``template``, ``sample`` (float ``[C, H, W]`` in 0..1), ``mask`` (long
    ``[H, W]``: 0/1 for binary data, class ids otherwise; all zeros when the folder has no masks),
    ``flow`` (float ``[2, h, w]`` template pixel coordinates at the returned size, NaN where
    undefined or unknown; ``h = H / flow_stride``), and ``meta`` (batch, defect, file names...).
    ``split_column`` picks another split column, e.g. ``split_inbatch`` of the OCD-like set.
    """

    def __init__(self, root: str | Path, split: str | None = None, *, size: int | None = None,
                 channels: int = 3, augment: Augment | None = None, require_mask: bool = True,
                 flow_stride: int = 4, limit: int | None = None, seed: int = 0,
                 split_column: str = "split"):
        self.table, _ = list_pairs(root, require_mask=require_mask)
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.records = [r for r in self.table.records
                        if split is None or _split_of(r, split_column) == split]
        if limit:
            self.records = self.records[:limit]
        self.split, self.size, self.channels = split, size, channels
        self.augment, self.flow_stride = augment, flow_stride
        self.rng = random.Random(seed)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.table.class_names

    @property
    def num_classes(self) -> int:
        return self.table.num_classes

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, record: PairRecord):
        problems = check_pair(record, self.class_names)
        if problems:
            raise DataError(problems[0])
        template = read_image(record.template)
        sample = read_image(record.sample)
        mask = (read_image(record.mask, kind="mask") if record.mask is not None
                else np.zeros(sample.shape[:2], np.uint8))
        if self.num_classes == 1:
            mask = (mask > 0).astype(np.uint8)
        flow = None
        if record.flow is not None:
            flow, _ = load_flow(record.flow, sample.shape[:2])
        return template, sample, mask, flow

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        template_np, sample_np, mask_np, flow_np = self._load(record)
        height, width = sample_np.shape[:2]
        template = _to_tensor(template_np, self.channels)  # [C, H, W]
        sample = _to_tensor(sample_np, self.channels)  # [C, H, W]
        mask = torch.from_numpy(mask_np.astype(np.int64))  # [H, W]
        out_h, out_w = (self.size, self.size) if self.size else (height, width)
        flow = self._flow_at(flow_np, (height, width), (out_h, out_w))  # [2, h, w]
        if (out_h, out_w) != (height, width):
            template = F.interpolate(template[None], (out_h, out_w), mode="bilinear",
                                     antialias=True, align_corners=False)[0]
            sample = F.interpolate(sample[None], (out_h, out_w), mode="bilinear",
                                   antialias=True, align_corners=False)[0]
            mask = F.interpolate(mask[None, None].float(), (out_h, out_w),
                                 mode="nearest-exact")[0, 0].long()
        if self.augment is not None:
            template, sample, mask, flow = self._augment(template, sample, mask, flow)
        meta = dict(record.meta)
        meta.update(template_file=str(record.template), sample_file=str(record.sample),
                    split=record.split, index=index)
        return {"template": template, "sample": sample, "mask": mask, "flow": flow, "meta": meta}

    def _flow_at(self, flow: np.ndarray | None, image_hw, out_hw) -> torch.Tensor:
        """Resample a stored flow to the output grid (stride ``flow_stride``) in output pixels."""
        grid_h, grid_w = out_hw[0] // self.flow_stride, out_hw[1] // self.flow_stride
        if flow is None:
            return torch.full((2, grid_h, grid_w), float("nan"))
        scale_x, scale_y = out_hw[1] / image_hw[1], out_hw[0] / image_hw[0]
        stored_h, stored_w = flow.shape[1:]
        stored_stride = image_hw[0] / stored_h
        # centre of each output cell in stored-flow grid coordinates (nearest sample)
        centres_y = ((np.arange(grid_h) + 0.5) * self.flow_stride / scale_y) / stored_stride - 0.5
        centres_x = ((np.arange(grid_w) + 0.5) * self.flow_stride / scale_x) / stored_stride - 0.5
        rows = np.clip(np.round(centres_y).astype(int), 0, stored_h - 1)
        cols = np.clip(np.round(centres_x).astype(int), 0, stored_w - 1)
        picked = flow[:, rows][:, :, cols].copy()  # [2, h, w] in stored image pixels
        # pixel-centre convention: x_out = (x_in + 0.5) * scale - 0.5
        picked[0] = (picked[0] + 0.5) * scale_x - 0.5
        picked[1] = (picked[1] + 0.5) * scale_y - 0.5
        return torch.from_numpy(picked.astype(np.float32))

    def _augment(self, template, sample, mask, flow):
        aug, rng = self.augment, self.rng
        height, width = mask.shape
        if rng.random() < aug.hflip:
            template, sample, mask = template.flip(-1), sample.flip(-1), mask.flip(-1)
            flow = flow.flip(-1).clone()
            flow[0] = (width - 1) - flow[0]
        if rng.random() < aug.vflip:
            template, sample, mask = template.flip(-2), sample.flip(-2), mask.flip(-2)
            flow = flow.flip(-2).clone()
            flow[1] = (height - 1) - flow[1]
        jittered = []
        for image in (template, sample):
            gain = 1 + rng.uniform(-aug.contrast, aug.contrast)
            offset = rng.uniform(-aug.brightness, aug.brightness)
            mean = image.mean()
            jittered.append(((image - mean) * gain + mean + offset).clamp(0, 1))
        return jittered[0], jittered[1], mask, flow


def collate_pairs(items: list[dict]) -> dict:
    """Stack a list of dataset items; ``meta`` becomes a list of dicts."""
    return {
        "template": torch.stack([i["template"] for i in items]),  # [N, C, H, W]
        "sample": torch.stack([i["sample"] for i in items]),  # [N, C, H, W]
        "mask": torch.stack([i["mask"] for i in items]),  # [N, H, W]
        "flow": torch.stack([i["flow"] for i in items]),  # [N, 2, h, w]
        "meta": [i["meta"] for i in items],
    }
