"""Building the DeepPCB dataset folder (chapter 1, "The problem").

``bgnet-lite data deeppcb`` is the command line for :func:`prepare_deeppcb`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import zlib
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..io import DataError, DatasetWriter, read_image
from .config import CLASSES, EXCLUDED_PAIRS, DeepPCBConfig
from .masks import binarize, derive_pair_mask, make_control_boxes
from .resize import _classes_present, misalign_template, resize_binary, resize_mask
from .source import _orphan_templates, _read_split, download_deeppcb, find_pcbdata, read_boxes
from .stats import _Tally


def _pair_seed(seed: int, pair_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(pair_id.encode())])


def _process_pair(job):
    """Everything for one pair; runs in a worker.  Returns arrays + per-pair statistics."""
    pcbdata, stem, annotation, config = job
    pair_id = Path(stem).name
    template = binarize(read_image(pcbdata / f"{stem}_temp.jpg"))
    test = binarize(read_image(pcbdata / f"{stem}_test.jpg"))
    if template.shape != test.shape:
        raise DataError(f"{pcbdata / stem}_test.jpg: size {test.shape} differs from the "
                        f"template's {template.shape}")
    boxes = read_boxes(pcbdata / annotation, test.shape)
    rng = _pair_seed(config.seed, pair_id)
    controls = make_control_boxes(template, boxes, rng)
    mask, info = derive_pair_mask(template, test, boxes, control_boxes=controls)

    size = config.size
    template_small = resize_binary(template, size)
    sample_small = resize_binary(test, size)
    mask_small = resize_mask(mask, size)
    scale_y, scale_x = size / test.shape[0], size / test.shape[1]
    shift = (info["global_shift"][0] * scale_y, info["global_shift"][1] * scale_x)
    template_small, flow = misalign_template(template_small, shift, config.misalign, rng)
    return {
        "pair_id": pair_id,
        "template": np.where(template_small, 0, 255).astype(np.uint8),  # copper dark
        "sample": np.where(sample_small, 0, 255).astype(np.uint8),
        "mask": mask_small,
        "flow": flow,
        "boxes": boxes,
        "controls": controls,
        "info": info,
    }


def _val_pairs(pair_ids: list[str], fraction: float, seed: int) -> set[str]:
    def rank(pair_id):
        return hashlib.sha1(f"{seed}:{pair_id}".encode()).hexdigest()

    count = int(round(fraction * len(pair_ids)))
    return set(sorted(pair_ids, key=rank)[:count])


def _check_request(source, download: bool, config: DeepPCBConfig) -> None:
    if config.size < 8:
        raise DataError(f"--size {config.size}: choose an output size of at least 8 px")
    if config.misalign < 0:
        raise DataError(f"--misalign {config.misalign}: must be >= 0 (e.g. 0.02)")
    if source is not None and download:
        raise DataError("give either --source PATH or --download, not both")
    if source is None and not download:
        raise DataError(
            "no DeepPCB source: pass --download to fetch github.com/tangsanli5201/DeepPCB, or "
            "--source PATH to a folder holding PCBData/ (e.g. shared/datasets/deeppcb)"
        )


def _list_jobs(pcbdata: Path, config: DeepPCBConfig):
    """The pairs to build, ``pair_id -> split`` (train, val or test) and the pairs left out
    with their reasons."""
    jobs, official, excluded = [], {}, []
    for split_file, split in (("trainval.txt", "trainval"), ("test.txt", "test")):
        entries = _read_split(pcbdata, split_file)
        if config.limit is not None:
            entries = entries[: config.limit]
        for stem, annotation in entries:
            if stem in EXCLUDED_PAIRS:
                excluded.append({"pair": stem, "reason": EXCLUDED_PAIRS[stem]})
                continue
            missing = [p for p in (f"{stem}_temp.jpg", f"{stem}_test.jpg", annotation)
                       if not (pcbdata / p).is_file()]
            if missing:
                excluded.append({"pair": stem, "reason": "missing " + ", ".join(missing)})
                continue
            if Path(stem).name in official:
                raise DataError(f"{pcbdata / split_file}: pair {Path(stem).name} is listed "
                                "twice; each pair id must be unique")
            jobs.append((pcbdata, stem, annotation, config))
            official[Path(stem).name] = split
    trainval_ids = [pid for pid, split in official.items() if split == "trainval"]
    val_ids = _val_pairs(trainval_ids, config.val_fraction, config.seed)
    splits = {pid: "test" if split == "test" else "val" if pid in val_ids else "train"
              for pid, split in official.items()}
    listed = {stem for stem, _ in _read_split(pcbdata, "trainval.txt")} | \
        {stem for stem, _ in _read_split(pcbdata, "test.txt")}
    unlisted = [{"pair": stem, "reason": "template without test image or annotation, not in "
                 "the split files"} for stem in _orphan_templates(pcbdata) if stem not in listed]
    return jobs, splits, excluded + unlisted


def _write_pairs(writer: DatasetWriter, jobs, splits, config: DeepPCBConfig,
                 progress: bool) -> _Tally:
    """Process every pair (in ``config.workers`` processes) and write it in job order."""
    tally = _Tally()
    if config.workers > 1 and len(jobs) > 1:
        # fork is cheap on Linux; elsewhere spawn is the safe default.
        pool = get_context("fork" if sys.platform.startswith("linux") else "spawn").Pool(
            config.workers)
        results = pool.imap(_process_pair, jobs, chunksize=4)
    else:
        pool, results = None, map(_process_pair, jobs)
    try:
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(jobs), desc="DeepPCB pairs", file=sys.stderr)
        for job, result in zip(jobs, results, strict=True):
            stem, pair_id = job[1], result["pair_id"]
            split = splits[pair_id]
            tally.add(result, split)
            paths = {kind: writer.add_image(f"{kind}/{pair_id}.png", result[kind])
                     for kind in ("template", "sample", "mask")}
            paths["flow"] = writer.add_flow(f"flow/{pair_id}.npy", result["flow"])
            writer.add_row(
                template=paths["template"], sample=paths["sample"], mask=paths["mask"],
                split=split, batch=Path(stem).parts[0].removeprefix("group"),
                defect=" ".join(CLASSES[c] for c in _classes_present(result["mask"])),
                source=f"PCBData/{stem}_test.jpg", flow=paths["flow"],
            )
    finally:
        if pool is not None:  # every result is consumed, or we are failing anyway
            pool.terminate()
            pool.join()
    return tally


def prepare_deeppcb(out_dir: str | os.PathLike, source: str | os.PathLike | None = None,
                    download: bool = False, config: DeepPCBConfig | None = None,
                    overwrite: bool = False, progress: bool = True) -> dict:
    """Build the DeepPCB dataset folder and return the mask-derivation statistics (chapter 1).

    Writes ``template/``, ``sample/`` (0/255 PNG), ``mask/`` (class-id PNG), ``flow/`` (.npy),
    ``pairs.csv`` (template, sample, mask, split, batch, defect, source, flow) and
    ``deeppcb_stats.json`` atomically.  Splits: official ``test.txt`` -> test; official
    ``trainval.txt`` -> train, with ``val_fraction`` of its pairs -> val.
    """
    config = config or DeepPCBConfig()
    _check_request(source, download, config)
    pcbdata = download_deeppcb() if download else find_pcbdata(source)
    started = time.perf_counter()
    jobs, splits, excluded = _list_jobs(pcbdata, config)
    writer = DatasetWriter(out_dir, overwrite=overwrite)
    try:
        tally = _write_pairs(writer, jobs, splits, config, progress)
        stats = {
            "source": str(pcbdata),
            "config": asdict(config),
            "pairs": {"used": len(jobs), "excluded": excluded},
            **tally.summary(),
            "wall_s": time.perf_counter() - started,
        }
        writer.add_file("deeppcb_stats.json", lambda path: path.write_text(
            json.dumps(stats, indent=2) + "\n"))
        # multi-class masks: the folder format reads class names from classes.json
        writer.add_file("classes.json", lambda path: path.write_text(json.dumps(list(CLASSES))))
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return stats
