"""The training loop for any registered method, and the run cache of the chapters (chapter 7).

The loop asks the model, not the method's name, for anything beyond ``forward``: extra loss
terms through ``training_losses`` (BGNet's matching loss), ``pretrained`` for the record.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import MISSING, asdict, fields, is_dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler
from tqdm.auto import tqdm

from bgnet_lite.data.folder import Augment, PairDataset, collate_pairs, require_valid_dataset
from bgnet_lite.data.io import DataError
from bgnet_lite.losses import focal_loss
from bgnet_lite.methods import create_model
from bgnet_lite.methods.common import describe_initialisation
from bgnet_lite.metrics import parameter_size_mb
from bgnet_lite.paths import runs_root
from bgnet_lite.provenance import provenance
from bgnet_lite.train import distributed
from bgnet_lite.train.config import TrainConfig
from bgnet_lite.train.evaluate import evaluate, pick_device, to_device
from bgnet_lite.train.runs import load_checkpoint, read_run_info, save_checkpoint, save_json


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (chapter 7)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state(train_set: PairDataset, generator: torch.Generator,
              epoch_start: torch.Tensor, batches_done: int) -> dict:
    """Everything random a training run draws from, for an exact resume (chapter 7): torch's,
    NumPy's and Python's generators, the augmentation's, the data order (the loader's
    generator as it was when this epoch began, and the batches of the epoch already used).
    Tensors and plain lists only, so ``torch.load(weights_only=True)`` reads it."""
    numpy_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)),
                      *numpy_state[2:]],
            "python": _plain(random.getstate()), "augment": _plain(train_set.rng.getstate()),
            "loader_epoch_start": epoch_start, "loader_generator": generator.get_state(),
            "batches_done": batches_done}


def _plain(state):
    """A Python ``random`` state as nested lists (tuples are rebuilt by ``_python_state``)."""
    return [list(item) if isinstance(item, tuple) else item for item in state]


def _python_state(plain) -> tuple:
    return tuple(tuple(item) if isinstance(item, list) else item for item in plain)


def restore_rng_state(state: dict, train_set: PairDataset) -> None:
    """Set every generator of ``rng_state`` back (after the data order was replayed)."""
    torch.set_rng_state(state["torch"].cpu())
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), *rest))
    random.setstate(_python_state(state["python"]))
    train_set.rng.setstate(_python_state(state["augment"]))


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, steps: int):
    """torch's scheduler for ``schedule`` (chapter 7): "constant" keeps the base rate,
    "cosine" is ``CosineAnnealingLR`` from the base rate to 0 over ``steps``."""
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def _loaders(config: TrainConfig, generator: torch.Generator,
             context: distributed.DistributedContext):
    augment = Augment() if config.augment else None
    train_set = PairDataset(config.data, "train", size=config.size, augment=augment,
                            seed=config.seed)
    val_set = PairDataset(config.data, "val", size=config.size, limit=config.val_pairs or None)
    if len(train_set) == 0 or len(val_set) == 0:
        raise DataError(f"{config.data}: needs pairs in both the train and val splits "
                        f"(found {len(train_set)} train, {len(val_set)} val)")
    drop_last = len(train_set) >= config.batch_size
    if context.active:  # the one-process loader's batches, each cut to this rank's share
        batches = BatchSampler(RandomSampler(train_set, generator=generator),
                               config.batch_size, drop_last)
        train_loader = DataLoader(train_set, collate_fn=collate_pairs, generator=generator,
                                  batch_sampler=distributed.RankSlices(
                                      batches, context.rank, context.world_size))
    else:
        train_loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True,
                                  drop_last=drop_last, collate_fn=collate_pairs,
                                  generator=generator)
    val_loader = DataLoader(val_set, batch_size=config.batch_size, collate_fn=collate_pairs)
    return train_set, train_loader, val_loader


def _training_losses(training_step, batch: dict, focal_alpha: float):
    """Total loss, focal term and the model's extra terms (eq. 16 + e.g. matching);
    ``training_step``: a ``distributed.TrainingStep`` (DDP-wrapped past one process)."""
    logits, extra = training_step(batch)
    focal = focal_loss(logits, batch["mask"], alpha=focal_alpha or None)  # 0 = off
    total = focal
    for term in extra.values():
        total = total + term
    return total, focal.detach(), {name: term.detach() for name, term in extra.items()}


def train(config: TrainConfig, progress: bool = True) -> dict:
    """Train one method; keep the best checkpoint on the validation split only (chapter 7).

    A method with no trainable parameter (a classical baseline) is validated once and saved
    as it is: the same run folder, so evaluation and prediction treat it like any other.  If it
    has ``calibrate(val_loader, device) -> dict`` (settings chosen on the validation split,
    kept in its buffers), that runs first and its answer goes into ``run.json``."""
    started = time.time()
    # every file of every split opened and checked before anything is written (a bad test
    # file found after an hour of training helps nobody)
    require_valid_dataset(config.data, progress=progress)
    context, device_name = distributed.start(config.device)
    try:
        return _train(config, progress and context.is_main, started, context, device_name)
    finally:
        distributed.stop(context)


def _train(config: TrainConfig, progress: bool, started: float,
           context: distributed.DistributedContext, device_name: str | None) -> dict:
    if config.batch_size % context.world_size:
        raise DataError(f"batch size {config.batch_size} (the global batch) does not split "
                        f"over {context.world_size} processes; choose a multiple of "
                        f"{context.world_size}")
    seed_everything(config.seed)
    device = pick_device(device_name)
    generator = torch.Generator().manual_seed(config.seed)
    train_set, train_loader, val_loader = _loaders(config, generator, context)
    num_classes = train_set.num_classes
    model = create_model(config.method, num_classes, train_set.channels,
                         **config.options).to(device)
    model, training_step, synced = distributed.wrap(model, context, device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    run_dir = Path(config.out)
    if context.is_main:
        _claim_run_dir(config, run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    distributed.barrier(context)
    run_info = {"train_config": asdict(config), "num_classes": num_classes,
                "in_channels": train_set.channels, "class_names": list(train_set.class_names),
                "model_config": _model_config(model), "params_mb": parameter_size_mb(model),
                "pretrained": getattr(model, "pretrained", None),
                "initialisation": describe_initialisation(getattr(model, "pretrained", None)),
                "provenance": provenance(config.profile)}
    if context.active:
        run_info["processes"] = {"world_size": context.world_size, "batchnorm": synced,
                                 "backend": torch.distributed.get_backend()}
    writer = context.is_main
    if writer:
        save_json(run_dir / "run.json", run_info)
    if parameters:
        step, best_score, resumed_wall = _optimise(model, training_step, parameters, config,
                                                   train_loader, val_loader, device,
                                                   num_classes, run_dir, progress, started,
                                                   writer)
    else:
        history, resumed_wall = {"train": [], "val": []}, 0.0
        if hasattr(model, "calibrate"):  # e.g. the classical baseline's threshold
            run_info["calibration"] = model.calibrate(val_loader, device)
        step, best_score = 0, _validate(model, val_loader, device, num_classes, 0, -1.0,
                                        history, run_dir, writer)
        if writer:
            save_json(run_dir / "history.json", history)
    # an interrupted run's earlier training time counts too (kept in its last checkpoint)
    run_info["wall_time_s"] = resumed_wall + time.time() - started
    run_info["best_val_miou"] = best_score
    run_info["steps"] = step
    if writer:
        save_json(run_dir / "run.json", run_info)
    distributed.barrier(context)
    return {"run": str(run_dir), "steps": step, "best_val_miou": best_score,
            "wall_time_s": round(run_info["wall_time_s"], 1)}


RUN_FILES = ("run.json", "history.json", "best.pt", "last.pt")
# settings a resumed run may change: a longer schedule, another device, the flags themselves
RESUMABLE_CHANGES = ("steps", "device", "resume", "overwrite", "out")


def _claim_run_dir(config: TrainConfig, run_dir: Path) -> None:
    """Refuse to mix two runs in one folder (chapter 7): a folder holding a run is resumed
    (same method and settings, checked) or replaced (``overwrite``), never silently reused."""
    for stray in run_dir.glob(".*.part"):  # a write interrupted by a kill
        stray.unlink()
    holds_run = any((run_dir / name).exists() for name in RUN_FILES)
    if config.resume:
        for needed in ("run.json", "last.pt", "history.json"):
            if not (run_dir / needed).is_file():
                raise DataError(f"{run_dir / needed}: not found, so there is nothing to resume; "
                                "train without --resume (add --overwrite to replace what is "
                                "there)")
        defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
        before = {**defaults, **read_run_info(run_dir)["train_config"]}
        now = asdict(config)
        changed = sorted(name for name in now if name not in RESUMABLE_CHANGES
                         and _setting(name, before.get(name)) != _setting(name, now[name]))
        if changed:
            raise DataError(f"{run_dir}: --resume with settings other than the run's "
                            f"({', '.join(changed)}); resume with the same ones, or train "
                            "into another --out")
    elif holds_run:
        if not config.overwrite:
            raise DataError(f"{run_dir}: already holds a run (run.json or checkpoints); pass "
                            "--resume to continue it, --overwrite to replace it, or choose "
                            "another --out")
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)


def _setting(name: str, value):
    """A setting as compared on resume: the data folder by where it is, not how it is
    written."""
    return str(Path(value).resolve()) if name == "data" and value else value


def _optimise(model, training_step, parameters, config: TrainConfig, train_loader,
              val_loader, device, num_classes: int, run_dir: Path, progress: bool,
              started: float, writer: bool = True) -> tuple[int, float, float]:
    """Adam steps with validation every ``eval_every``; returns (steps, best val mIoU, the
    wall time of the interrupted run this one resumed).  ``writer``: this process writes
    the history and checkpoints (rank 0 of a distributed run)."""
    optimizer = torch.optim.Adam(parameters, lr=config.lr)
    scheduler = make_scheduler(optimizer, config.lr_schedule, config.steps)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    step, best_score, history, resumed_wall = 0, -1.0, {"train": [], "val": []}, 0.0
    last_path = run_dir / "last.pt"
    generator, train_set = train_loader.generator, train_loader.dataset
    epoch_start, batches_done = generator.get_state(), 0
    batches = iter(train_loader)
    if config.resume and last_path.is_file():
        state = load_checkpoint(last_path, device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, best_score = int(state["step"]), float(state["best_score"])
        resumed_wall = float(state.get("wall_time_s", 0.0))
        history = json.loads((run_dir / "history.json").read_text())
        # the steps after the checkpoint were lost with the process: drop their log lines
        history["train"] = [h for h in history["train"] if h["step"] <= step]
        history["val"] = [v for v in history["val"] if v["step"] <= step]
        if "rng" in state:  # replay this epoch's order, then every generator as it was
            # generator states live on the CPU whatever device the checkpoint was mapped to
            epoch_start, batches_done = state["rng"]["loader_epoch_start"].cpu(), 0
            generator.set_state(epoch_start)
            batches = iter(train_loader)
            for _ in range(state["rng"]["batches_done"]):
                next(batches)
                batches_done += 1
            restore_rng_state(state["rng"], train_set)
    model.train()
    bar = tqdm(total=config.steps, initial=step, desc=f"train {config.method}",
               disable=not progress)
    while step < config.steps:
        try:
            batch = next(batches)
        except StopIteration:
            epoch_start, batches_done = generator.get_state(), 0
            batches = iter(train_loader)
            batch = next(batches)
        batches_done += 1
        batch = to_device(batch, device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            loss, focal, extra = _training_losses(training_step, batch, config.focal_alpha)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        logged = distributed.mean_over_ranks({"loss": loss, "focal": focal, **extra})
        history["train"].append({"step": step, **logged})
        bar.update(1)
        bar.set_postfix(loss=f"{logged['loss']:.4f}")
        if step % config.eval_every == 0 or step == config.steps:
            best_score = _validate(model, val_loader, device, num_classes, step, best_score,
                                   history, run_dir, writer)
            if not writer:
                continue
            # the log first: a kill between the two leaves lines past the checkpoint, which a
            # resume drops, never a checkpoint past the log
            save_json(run_dir / "history.json", history)
            save_checkpoint(last_path, {"model": model.state_dict(),
                                        "optimizer": optimizer.state_dict(),
                                        "scheduler": scheduler.state_dict(),
                                        "step": step, "best_score": best_score,
                                        "wall_time_s": resumed_wall + time.time() - started,
                                        "rng": rng_state(train_set, generator, epoch_start,
                                                         batches_done)})
        elif config.monitor_every and step % config.monitor_every == 0:
            _monitor(model, val_loader, device, num_classes, step, history)
    bar.close()
    return step, best_score, resumed_wall


def _model_config(model) -> dict | None:
    config = getattr(model, "config", None)
    return asdict(config) if is_dataclass(config) else None


def _monitor(model, val_loader, device, num_classes, step, history) -> None:
    """Validation metrics into the history only (``monitor_every``): no checkpoint, and the
    random state is put back, because opening a data loader draws a seed from torch's
    generator, which the training steps (dropout) share."""
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):
        metrics = evaluate(model, val_loader, device, num_classes)
    history["val"].append({**metrics, "step": step, "selects_checkpoint": False})


def _validate(model, val_loader, device, num_classes, step, best_score, history,
              run_dir: Path, writer: bool = True) -> float:
    """Validation metrics into the history; ``best.pt`` when the mIoU improved (written by
    the ``writer`` process only; every process keeps the same best score)."""
    metrics = evaluate(model, val_loader, device, num_classes)
    metrics["step"] = step
    history["val"].append(metrics)
    if metrics["miou"] > best_score:
        best_score = metrics["miou"]
        if writer:
            save_checkpoint(run_dir / "best.pt", {"model": model.state_dict(), "step": step,
                                                  "val_miou": best_score})
    return best_score


def ensure_run(data: str | Path, method: str = "bgnet-s5", *, options: dict | None = None,
               profile: str | None = None, name: str | None = None, progress: bool = True,
               **settings) -> Path:
    """A trained run for the chapters: reused from ``<runs>/<profile>/<name>`` when it finished
    with the same configuration, resumed from its last checkpoint when the same run was
    interrupted, trained otherwise (chapters 7-8).  ``settings`` are
    :class:`TrainConfig` fields (seed, steps, ...).  Returns the run folder."""
    options = dict(options or {})
    probe = TrainConfig(data=str(data), out="", method=method, options=options,
                        profile=profile, **settings)
    name = name or method + "".join(f"-{k}{v}" for k, v in sorted({**options,
                                                                     **settings}.items()))
    out = runs_root() / probe.profile / name
    probe.out = str(out)
    if (out / "run.json").is_file():
        info = read_run_info(out)
        # a setting added after the run was trained had its default value then
        defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
        ignored = {"resume": False, "overwrite": False}
        same = ({**defaults, **info["train_config"], **ignored} == {**asdict(probe), **ignored})
        if same and "steps" in info and (out / "best.pt").is_file():  # finished
            return out
        # the same run, interrupted after a checkpoint: go on from there; anything else in
        # this cache folder is replaced
        probe.resume = same and (out / "last.pt").is_file() and (out / "history.json").is_file()
        probe.overwrite = not probe.resume
    train(probe, progress=progress)
    return out
