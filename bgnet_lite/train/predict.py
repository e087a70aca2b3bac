"""Masks and overlays for a folder of pairs from a trained run (chapter 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from bgnet_lite.data.folder import PairDataset
from bgnet_lite.data.io import save_png
from bgnet_lite.metrics import logits_to_prediction
from bgnet_lite.train.evaluate import pick_device
from bgnet_lite.train.runs import load_run


@torch.no_grad()
def predict_folder(run: str | Path, pairs: str | Path, out: str | Path, *,
                   device: str | None = None) -> int:
    """Mask PNG (0/255 binary, class ids otherwise) and overlay PNG for every pair in ``pairs``
    (chapter 7); returns the number of pairs."""
    from bgnet_lite.viz import overlay_mask

    torch_device = pick_device(device)
    model, info = load_run(run, torch_device)
    dataset = PairDataset(pairs, size=info["train_config"]["size"], require_mask=False)
    out = Path(out)
    for index in tqdm(range(len(dataset)), desc="predict"):
        item = dataset[index]
        logits = model(item["template"][None].to(torch_device),
                       item["sample"][None].to(torch_device))  # [1, K, h, w]
        with Image.open(item["meta"]["sample_file"]) as original:
            width, height = original.size
        # the model sees the training size; the mask is written at the sample's own size
        logits = torch.nn.functional.interpolate(logits, (height, width), mode="bilinear",
                                                 align_corners=False)
        prediction = logits_to_prediction(logits)[0].cpu().numpy().astype(np.uint8)
        mask_png = prediction * 255 if info["num_classes"] == 1 else prediction
        name = item["meta"]["name"]
        save_png(out / "mask" / f"{name}.png", mask_png)
        sample = np.asarray(Image.open(item["meta"]["sample_file"]).convert("RGB"))
        overlay = (overlay_mask(sample, prediction) * 255).round().astype(np.uint8)
        save_png(out / "overlay" / f"{name}.png", overlay)
    return len(dataset)
