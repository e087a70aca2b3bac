"""Writing the whole OCD-like dataset folder (chapter 1, "The problem")."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

from ..io import DatasetWriter
from .config import SynthConfig, batch_splits, defect_schedule, inbatch_splits
from .pair import generate_pair


def _batch_for_writing(job):
    """Render the pairs of one batch (one job per batch, so that each worker builds a batch
    scene once): (template, [(sample, mask, coarse_flow), ...])."""
    config, batch, indices = job
    results = []
    template = None
    for index in indices:
        pair = generate_pair(config, batch, index)
        template = pair.template if template is None else template
        results.append((pair.sample, pair.mask, pair.coarse_flow))
    return template, results


def write_synth_dataset(
    out_dir,
    config: SynthConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
    workers: int | None = None,
) -> Path:
    """Render the whole synthetic dataset into ``out_dir`` (atomically, via DatasetWriter):
    ``template/bNN.png`` once per batch, ``sample/``, ``mask/``, ``flow/`` per pair and
    ``synth_config.json`` (chapter 1, "The problem").

    ``pairs.csv`` columns: template, sample, mask, split (by batch), split_inbatch, batch,
    defect, flow.  ``workers`` (default: 2 for >= 64 pairs, else 1) only changes speed: every
    pair is deterministic on its own.
    """
    from tqdm import tqdm

    schedule = defect_schedule(config)
    by_batch = batch_splits(config)
    in_batch = inbatch_splits(config)
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if config.pairs >= 64 else 1
    members = {batch: [] for batch in range(config.batches)}
    for index, (batch, _) in enumerate(schedule):
        members[batch].append(index)
    jobs = [(config, batch, indices) for batch, indices in members.items()]
    with DatasetWriter(out_dir, overwrite=overwrite) as writer:
        writer.add_file(
            "synth_config.json",
            lambda path: path.write_text(json.dumps(config.to_dict(), indent=2) + "\n"),
        )
        pool = None
        if workers > 1:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            pool = multiprocessing.get_context(method).Pool(workers)
            results = pool.imap(_batch_for_writing, jobs)
        else:
            results = map(_batch_for_writing, jobs)
        bar = tqdm(total=config.pairs, desc="synth", unit="pair", disable=not progress)
        try:
            for (_, batch, indices), (template, pairs) in zip(jobs, results, strict=True):
                template_path = writer.add_image(f"template/b{batch:02d}.png", template)
                for index, (sample, mask, coarse_flow) in zip(indices, pairs, strict=True):
                    writer.add_row(
                        template=template_path,
                        sample=writer.add_image(f"sample/{index:04d}.png", sample),
                        mask=writer.add_image(f"mask/{index:04d}.png", mask),
                        split=by_batch[batch],
                        split_inbatch=in_batch[index],
                        batch=batch,
                        defect=schedule[index][1],
                        flow=writer.add_flow(f"flow/{index:04d}.npy", coarse_flow),
                    )
                    bar.update(1)
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
                pool.join()
    return Path(out_dir)
