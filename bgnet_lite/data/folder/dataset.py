"""The one torch Dataset over a dataset folder, its augmentation and batch collation
(chapter 1, "The problem")."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..io import SPLITS, DataError
from .check import read_pair
from .table import PairRecord, list_pairs


@dataclass
class Augment:
    """Training augmentations that keep template and sample in their own frames (chapter 1).

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

    Opening lists the folder (every listed file must exist); an item decodes each of its files
    once and applies :func:`check_dataset`'s checks to the decoded arrays.
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
        """The triplet's arrays, each file decoded once; the validator's checks run on them."""
        arrays, problems = read_pair(record, self.class_names)
        if problems:
            raise DataError(problems[0])
        mask = (arrays.mask if arrays.mask is not None
                else np.zeros(arrays.sample.shape[:2], np.uint8))
        if self.num_classes == 1:
            mask = (mask > 0).astype(np.uint8)
        return arrays.template, arrays.sample, mask, arrays.flow

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
    """Stack a list of dataset items; ``meta`` becomes a list of dicts (chapter 1)."""
    return {
        "template": torch.stack([i["template"] for i in items]),  # [N, C, H, W]
        "sample": torch.stack([i["sample"] for i in items]),  # [N, C, H, W]
        "mask": torch.stack([i["mask"] for i in items]),  # [N, H, W]
        "flow": torch.stack([i["flow"] for i in items]),  # [N, 2, h, w]
        "meta": [i["meta"] for i in items],
    }
