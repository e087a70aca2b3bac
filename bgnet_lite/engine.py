"""Training, evaluation and prediction (chapter 7, "Training and metrics").

A run folder holds ``run.json`` (configuration and provenance), ``history.json`` (loss and
validation curves), ``best.pt`` (best validation mIoU) and ``last.pt`` (for ``--resume``).
Checkpoints are written atomically and loaded with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .data.folder import Augment, PairDataset, collate_pairs
from .data.io import DataError, atomic_write_bytes, save_png
from .loss import focal_loss, matching_loss
from .metrics import ConfusionMatrix, logits_to_prediction
from .model.bgnet import BGNet, BGNetConfig, parameter_size_mb
from .model.matching import flow_to_cell_targets, matching_accuracy
from .profiles import get_profile
from .provenance import provenance

LR_SCHEDULES = ("constant", "cosine")


def learning_rate(base_lr: float, schedule: str, step: int, steps: int) -> float:
    """The learning rate of optimisation step ``step`` (0-based) of ``steps`` (chapter 7).

    "constant": ``base_lr`` throughout; "cosine": ``base_lr * (1 + cos(pi * step / steps)) / 2``,
    from ``base_lr`` down towards 0 at the last step (SGDR without restarts, Loshchilov & Hutter).
    """
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / max(steps, 1)))
    raise ValueError(f"unknown lr_schedule {schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")


@dataclass
class TrainConfig:
    """Everything a training run needs; unset fields come from the profile."""

    data: str
    out: str
    variant: str = "S5"
    profile: str | None = None
    size: int | None = None
    steps: int | None = None
    seed: int = 0
    lr: float | None = None  # the paper writes "10e-5" (1e-4 or 1e-5?): profiles choose
    batch_size: int | None = None
    eval_every: int | None = None
    val_pairs: int | None = None
    match_loss: float = 0.0  # weight of the matching loss; 0 = the paper (off)
    soft_match: bool = False
    align_fine_scales: bool = False  # deviation: resample 1/2, 1/4, 1/16 along the matches
    local_match_px: float = 0.0  # deviation: nearest template feature within N px, unmatched scales
    lr_schedule: str = "constant"  # "constant" (the paper names none) or "cosine" decay to 0
    focal_alpha: float | None = None  # alpha-balanced focal loss; 0 = off (the paper)
    theta: float | None = None
    temperature: float | None = None  # matching score scale (chapter 5); None = the model's
    depth: int | None = None  # stack depth at 1/8; 1/32 gets twice as many (paper: more deep)
    attention_dim: int | None = None  # eq. 11's C_1; None = each scale's channels (LoFTR)
    weights: str = "auto"
    device: str | None = None
    resume: bool = False
    augment: bool = True

    def __post_init__(self):
        profile = get_profile(self.profile)
        self.profile = profile.name
        for name in ("steps", "batch_size", "eval_every", "val_pairs", "lr", "focal_alpha"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(profile, name))
        if self.size is None:
            self.size = profile.image_size
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                             f"got {self.lr_schedule!r}")
        if not 0 <= self.focal_alpha < 1:
            raise ValueError(f"focal_alpha must be in [0, 1) (0 = off, the paper), "
                             f"got {self.focal_alpha}")

    @classmethod
    def from_args(cls, args) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in vars(args).items() if k in names})

    def model_config(self, num_classes: int) -> BGNetConfig:
        overrides = {"num_classes": 1 if num_classes == 2 else num_classes,
                     "weights": self.weights, "soft_match": self.soft_match,
                     "align_fine_scales": self.align_fine_scales,
                     "local_match_px": self.local_match_px}
        if self.theta is not None:
            overrides["theta"] = self.theta
        if self.temperature is not None:
            overrides["temperature"] = self.temperature
        if self.depth is not None:
            overrides.update(depth_8=self.depth, depth_32=2 * self.depth)
        if self.attention_dim is not None:
            overrides["attention_dim"] = self.attention_dim
        return BGNetConfig.from_variant(self.variant, **overrides)


def pick_device(name: str | None = None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_checkpoint(path: Path, payload: dict) -> None:
    atomic_write_bytes(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    if not Path(path).is_file():
        raise DataError(f"{path}: checkpoint not found; train first with `bgnet-lite train`")
    return torch.load(path, map_location=device, weights_only=True)


def _json_safe(value):
    """NaN (e.g. precision with no predicted defect) becomes null: strict JSON has no NaN."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def save_json(path: Path, payload: dict) -> None:
    text = json.dumps(_json_safe(payload), indent=2, default=float)
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(text))


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()}


def _matched_strides(outputs: dict) -> list[int]:
    return sorted(outputs.get("matches", {}) or {})


def compute_loss(model: BGNet, batch: dict, match_weight: float, num_classes: int,
                 focal_alpha: float | None = None):
    """Focal loss (eq. 16) plus the optional matching loss at every matched scale."""
    need_prob = match_weight > 0
    outputs = model(batch["template"], batch["sample"], need_match_prob=need_prob)
    target = batch["mask"] if num_classes > 2 else batch["mask"].float()
    seg_loss = focal_loss(outputs["logits"], target, alpha=focal_alpha or None)  # 0 = off
    match_term = seg_loss.new_zeros(())
    if need_prob:
        image_hw = batch["sample"].shape[-2:]
        for stride, match_prob in outputs["match_prob"].items():
            feat_hw = (image_hw[0] // stride, image_hw[1] // stride)
            gt_cells = flow_to_cell_targets(batch["flow"], image_hw, feat_hw)
            match_term = match_term + matching_loss(match_prob, gt_cells)
    return seg_loss + match_weight * match_term, seg_loss.detach(), match_term.detach(), outputs


@torch.no_grad()
def evaluate(model: BGNet, loader, device: torch.device, num_classes: int,
             progress: bool = False) -> dict:
    """Metrics over a whole split from one accumulated confusion matrix (eq. 17-21), plus the
    share of MNN matches within one cell of the ground truth where flows are known."""
    model.eval()
    confusion = ConfusionMatrix(max(num_classes, 2))
    match_counts: dict[int, dict[str, int]] = {}
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        batch = _to_device(batch, device)
        outputs = model(batch["template"], batch["sample"])
        confusion.update(logits_to_prediction(outputs["logits"]), batch["mask"])
        image_hw = batch["sample"].shape[-2:]
        for stride in _matched_strides(outputs):
            feat_hw = (image_hw[0] // stride, image_hw[1] // stride)
            gt_cells = flow_to_cell_targets(batch["flow"], image_hw, feat_hw)
            counts = matching_accuracy(outputs["matches"][stride].sample_to_template, gt_cells,
                                       feat_hw[1])
            total = match_counts.setdefault(stride, {"matches": 0, "evaluated": 0,
                                                     "within_one_cell": 0})
            for key in total:
                total[key] += int(counts[key])
    metrics = confusion.compute()
    for stride, total in match_counts.items():
        cells = (image_hw[0] // stride) * (image_hw[1] // stride)
        metrics[f"match_within_one_cell_1_{stride}"] = (
            total["within_one_cell"] / total["evaluated"] if total["evaluated"] else float("nan"))
        metrics[f"matches_per_pair_1_{stride}"] = total["matches"] / max(len(loader.dataset), 1)
        metrics[f"match_cells_1_{stride}"] = cells
    model.train()
    return metrics


@torch.no_grad()
def defect_iou_by_type(model: BGNet, loader, device: torch.device | str = "cpu") -> dict:
    """Defect IoU per value of the dataset's ``defect`` column, over a whole split (chapter 7).

    One confusion matrix per type, accumulated over all its pairs like :func:`evaluate`'s;
    its ``defect_iou`` counts every class but the background as "defect".  Pairs without a
    ``defect`` column are counted as "unlabelled".  Returns ``{type: {"pairs",
    "truth_px_per_pair", "defect_iou"}}`` sorted by type; the IoU is NaN for a type with no
    defect pixel predicted or true.
    """
    was_training = model.training
    model.eval()
    num_classes = max(model.config.num_classes, 2)
    confusions: dict[str, ConfusionMatrix] = {}
    pairs: dict[str, int] = {}
    for batch in loader:
        batch = _to_device(batch, torch.device(device))
        prediction = logits_to_prediction(model(batch["template"], batch["sample"])["logits"])
        for index, meta in enumerate(batch["meta"]):
            kind = meta.get("defect") or "unlabelled"
            confusion = confusions.setdefault(kind, ConfusionMatrix(num_classes))
            confusion.update(prediction[index:index + 1], batch["mask"][index:index + 1])
            pairs[kind] = pairs.get(kind, 0) + 1
    model.train(was_training)
    return {kind: {"pairs": pairs[kind],
                   "truth_px_per_pair": int(confusions[kind].matrix[1:].sum()) / pairs[kind],
                   "defect_iou": confusions[kind].compute()["defect_iou"]}
            for kind in sorted(confusions)}


def _loaders(config: TrainConfig, generator: torch.Generator):
    augment = Augment() if config.augment else None
    train_set = PairDataset(config.data, "train", size=config.size, augment=augment,
                            seed=config.seed)
    val_set = PairDataset(config.data, "val", size=config.size, limit=config.val_pairs or None)
    if len(train_set) == 0 or len(val_set) == 0:
        raise DataError(f"{config.data}: needs pairs in both the train and val splits "
                        f"(found {len(train_set)} train, {len(val_set)} val)")
    train_loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True,
                              drop_last=len(train_set) >= config.batch_size,
                              collate_fn=collate_pairs, generator=generator)
    val_loader = DataLoader(val_set, batch_size=config.batch_size, collate_fn=collate_pairs)
    return train_set, train_loader, val_loader


def train(config: TrainConfig, progress: bool = True) -> dict:
    """Train one variant; keep the best checkpoint on the validation split only."""
    started = time.time()
    seed_everything(config.seed)
    device = pick_device(config.device)
    generator = torch.Generator().manual_seed(config.seed)
    train_set, train_loader, val_loader = _loaders(config, generator)
    num_classes = train_set.num_classes
    model = BGNet(config.model_config(num_classes)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    run_dir = Path(config.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    step, best_score, history = 0, -1.0, {"train": [], "val": []}
    last_path = run_dir / "last.pt"
    if config.resume and last_path.is_file():
        state = load_checkpoint(last_path, device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, best_score = int(state["step"]), float(state["best_score"])
        history = json.loads((run_dir / "history.json").read_text())
    run_info = {"train_config": asdict(config), "model_config": asdict(model.config),
                "num_classes": num_classes, "class_names": list(train_set.class_names),
                "params_mb": parameter_size_mb(model), "provenance": provenance(config.profile)}
    save_json(run_dir / "run.json", run_info)

    model.train()
    bar = tqdm(total=config.steps, initial=step, desc=f"train {config.variant}",
               disable=not progress)
    batches = iter(train_loader)
    while step < config.steps:
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(train_loader)
            batch = next(batches)
        batch = _to_device(batch, device)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config.lr, config.lr_schedule, step, config.steps)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            loss, seg_loss, match_term, _ = compute_loss(model, batch, config.match_loss,
                                                         num_classes, config.focal_alpha)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        step += 1
        history["train"].append({"step": step, "loss": loss.item(), "focal": seg_loss.item(),
                                 "match": match_term.item()})
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % config.eval_every == 0 or step == config.steps:
            metrics = evaluate(model, val_loader, device, num_classes)
            metrics["step"] = step
            history["val"].append(metrics)
            if metrics["miou"] > best_score:
                best_score = metrics["miou"]
                save_checkpoint(run_dir / "best.pt", {"model": model.state_dict(), "step": step,
                                                      "val_miou": best_score})
            save_checkpoint(last_path, {"model": model.state_dict(),
                                        "optimizer": optimizer.state_dict(),
                                        "step": step, "best_score": best_score})
            save_json(run_dir / "history.json", history)
    bar.close()
    run_info["wall_time_s"] = run_info.get("wall_time_s", 0.0) + time.time() - started
    run_info["best_val_miou"] = best_score
    run_info["steps"] = step
    save_json(run_dir / "run.json", run_info)
    return {"run": str(run_dir), "steps": step, "best_val_miou": best_score,
            "wall_time_s": round(run_info["wall_time_s"], 1)}


def load_run(run: str | Path, device: torch.device | str = "cpu") -> tuple[BGNet, dict]:
    """The best model of a run folder and its ``run.json``."""
    run = Path(run)
    info_path = run / "run.json"
    if not info_path.is_file():
        raise DataError(f"{info_path}: not found; RUN must be a folder written by "
                        "`bgnet-lite train`")
    info = json.loads(info_path.read_text())
    model_config = BGNetConfig(**{**info["model_config"], "weights": "none"})
    model = BGNet(model_config)
    model.load_state_dict(load_checkpoint(run / "best.pt", device)["model"])
    return model.to(device).eval(), info


def evaluate_run(run: str | Path, data: str | Path, *, split: str = "test",
                 json_path: str | Path | None = None, size: int | None = None,
                 device: str | None = None) -> dict:
    """Metrics of a run's best checkpoint on a split; optionally written to JSON."""
    started = time.time()
    torch_device = pick_device(device)
    model, info = load_run(run, torch_device)
    train_config = info["train_config"]
    dataset = PairDataset(data, split, size=size or train_config["size"])
    if len(dataset) == 0:
        raise DataError(f"{data}: the {split} split is empty")
    loader = DataLoader(dataset, batch_size=train_config["batch_size"], collate_fn=collate_pairs)
    metrics = evaluate(model, loader, torch_device, info["num_classes"])
    metrics.update(params_mb=parameter_size_mb(model), split=split, pairs=len(dataset),
                   variant=train_config["variant"], profile=train_config["profile"],
                   seed=train_config["seed"], run=str(run), data=str(data),
                   train_wall_time_s=info.get("wall_time_s"),
                   eval_wall_time_s=round(time.time() - started, 2),
                   provenance=provenance(train_config["profile"]))
    if json_path:
        save_json(Path(json_path), metrics)
    return metrics


def format_metrics(metrics: dict) -> str:
    keys = ["precision", "recall", "f2", "miou", "miou_defect", "defect_iou", "macc",
            "params_mb"] + sorted(k for k in metrics if k.startswith("match_within"))
    lines = [f"{metrics.get('variant', '')} on {metrics.get('split', '')} "
             f"({metrics.get('pairs', '?')} pairs)"]
    lines += [f"  {key:<28} {metrics[key]:.4f}" for key in keys if key in metrics]
    return "\n".join(lines)


@torch.no_grad()
def predict_folder(run: str | Path, pairs: str | Path, out: str | Path, *,
                   theta: float | None = None, device: str | None = None) -> int:
    """Mask PNG (0/255 binary, class ids otherwise) and overlay PNG for every pair in ``pairs``."""
    from .viz import overlay_mask

    torch_device = pick_device(device)
    model, info = load_run(run, torch_device)
    if theta is not None:
        model.config.theta = theta
    dataset = PairDataset(pairs, size=info["train_config"]["size"], require_mask=False)
    out = Path(out)
    for index in tqdm(range(len(dataset)), desc="predict"):
        item = dataset[index]
        logits = model(item["template"][None].to(torch_device),
                       item["sample"][None].to(torch_device))["logits"]
        with Image.open(item["meta"]["sample_file"]) as original:
            width, height = original.size
        # the model sees the training size; the mask is written at the sample's own size
        logits = torch.nn.functional.interpolate(logits, (height, width), mode="bilinear",
                                                 align_corners=False)
        prediction = logits_to_prediction(logits)[0].cpu().numpy().astype(np.uint8)
        mask_png = prediction * 255 if info["num_classes"] == 2 else prediction
        name = item["meta"]["name"]
        save_png(out / "mask" / f"{name}.png", mask_png)
        sample = np.asarray(Image.open(item["meta"]["sample_file"]).convert("RGB"))
        overlay = (overlay_mask(sample, prediction) * 255).round().astype(np.uint8)
        save_png(out / "overlay" / f"{name}.png", overlay)
    return len(dataset)


def ensure_run(data: str | Path, variant: str = "S5", *, profile: str | None = None,
               name: str | None = None, progress: bool = True, **overrides) -> Path:
    """A trained run for the chapters (7, 8): reused from ``runs/<profile>/<name>`` when it
    finished with the same configuration, trained otherwise.  Returns the run folder."""
    from .data.cache import REPO_ROOT

    probe = TrainConfig(data=str(data), out="", variant=variant, profile=profile, **overrides)
    name = name or variant + "".join(f"-{k}{v}" for k, v in sorted(overrides.items()))
    out = Path(os.environ.get("BGNET_RUNS", REPO_ROOT / "runs")) / probe.profile / name
    probe.out = str(out)
    info_path = out / "run.json"
    if info_path.is_file() and (out / "best.pt").is_file():
        info = json.loads(info_path.read_text())
        done = info.get("steps") == probe.steps
        # an option added after the run was trained had its default value then
        defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
        if done and {**defaults, **info["train_config"]} == asdict(probe):
            return out
    train(probe, progress=progress)
    return out
