"""Masks and overlays for a folder of pairs from a trained run (chapter 7)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from bgnet_lite.data.folder import PairDataset, require_valid_dataset
from bgnet_lite.data.io import save_png
from bgnet_lite.metrics import logits_to_prediction
from bgnet_lite.train.evaluate import pick_device
from bgnet_lite.train.runs import load_run

# above this many cells at 1/8 (64 x 64, a 512 x 512 image) BGNet matches in chunks: the dense
# L x S matrix would take L^2 x 4 bytes (1 GiB at 1024 x 1024); the matches are the same
DENSE_MATCH_MAX_CELLS = 4096


def output_names(dataset: PairDataset) -> list[str]:
    """A file name per pair that no other pair shares (chapter 7): the sample's path inside the
    dataset folder, sub-folders kept, a leading ``sample/`` dropped, suffix ``.png``; samples
    that differ only by their suffix keep it (``a.jpg.png``)."""
    root = Path(dataset.table.root)
    relative = []
    for record in dataset.records:
        path = Path(record.sample).relative_to(root) if Path(record.sample).is_relative_to(
            root) else Path(Path(record.sample).name)
        if path.parts[0] == "sample" and len(path.parts) > 1:
            path = Path(*path.parts[1:])
        relative.append(path)
    stems = Counter(path.with_suffix("") for path in relative)
    return [str(path.with_suffix("") if stems[path.with_suffix("")] == 1 else path) + ".png"
            for path in relative]


def _match_in_chunks_if_large(model, height: int, width: int) -> None:
    """Switch a matching model to the chunked matcher for a large pair (same matches)."""
    deviations = getattr(getattr(model, "config", None), "deviations", None)
    if hasattr(deviations, "chunked_matching") and \
            (height // 8) * (width // 8) > DENSE_MATCH_MAX_CELLS:
        deviations.chunked_matching = True


@torch.no_grad()
def predict_folder(run: str | Path, pairs: str | Path, out: str | Path, *,
                   device: str | None = None, size: int | None = None,
                   progress: bool = True) -> int:
    """Mask PNG (0/255 binary, class ids otherwise) and overlay PNG for every pair in ``pairs``
    (chapter 7), at each sample's own resolution (``size``: resize every pair to size x size
    for the model instead, then back); returns the number of pairs written."""
    from bgnet_lite.viz import overlay_mask

    require_valid_dataset(pairs, require_mask=False, progress=progress)  # before any mask
    torch_device = pick_device(device)
    model, info = load_run(run, torch_device)
    dataset = PairDataset(pairs, size=size, channels=info.get("in_channels", 3),
                          require_mask=False)
    names = output_names(dataset)
    out = Path(out)
    for index in tqdm(range(len(dataset)), desc="predict", disable=not progress):
        item = dataset[index]
        with Image.open(item["meta"]["sample_file"]) as original:
            width, height = original.size
        _match_in_chunks_if_large(model, *item["sample"].shape[-2:])
        logits = model(item["template"][None].to(torch_device),
                       item["sample"][None].to(torch_device))  # [1, K, h, w]
        if logits.shape[-2:] != (height, width):  # a resized pair: back to the sample's size
            logits = torch.nn.functional.interpolate(logits, (height, width), mode="bilinear",
                                                     align_corners=False)
        prediction = logits_to_prediction(logits)[0].cpu().numpy().astype(np.uint8)
        mask_png = prediction * 255 if info["num_classes"] == 1 else prediction
        save_png(out / "mask" / names[index], mask_png)
        sample = np.asarray(Image.open(item["meta"]["sample_file"]).convert("RGB"))
        overlay = (overlay_mask(sample, prediction) * 255).round().astype(np.uint8)
        save_png(out / "overlay" / names[index], overlay)
    return len(dataset)
