"""Training past one process: ``torchrun --nproc_per_node N -m bgnet_lite.cli train ...``
runs the same loop with ``DistributedDataParallel`` (chapter 7).

- The **global** batch is ``batch_size``, as in one process: every rank draws the same global
  batches from the same seeded generator and keeps its own slice (:class:`RankSlices`), so the
  data order, and with it an exact resume, is the single-process one.  (torch's
  ``DistributedSampler`` shuffles per epoch by its own rule; slicing the single-process order
  keeps one run comparable with the other, which the test relies on.)
- Gradients are averaged over ranks by DDP; each rank's loss is the mean over its slice, so the
  update is the one-process update of the global batch.
- BatchNorm normalises with the statistics of the global batch: torch's ``SyncBatchNorm`` on
  CUDA; on the CPU, where torch has none, :class:`AllReduceBatchNorm2d` (sums over ranks
  through the differentiable ``torch.distributed.nn.all_reduce``).  Norm layers other than
  plain ``BatchNorm2d`` (none in the registered methods but timm's fused ones) stay per rank.
- Rank 0 alone writes ``run.json``, the history and the checkpoints, and shows progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    started_here: bool = False  # this module called init_process_group (and will end it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def start(device_name: str | None) -> tuple[DistributedContext, str | None]:
    """The process group from torchrun's environment (``WORLD_SIZE``, ``RANK``,
    ``LOCAL_RANK``), or a one-process context; and the device this rank should use."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(), device_name
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device_name or "cuda").startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device_name = f"cuda:{local_rank}"
    else:
        device_name = "cpu"
    started = not dist.is_initialized()
    if started:
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistributedContext(rank, world_size, local_rank, started), device_name


def stop(context: DistributedContext) -> None:
    if context.started_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistributedContext) -> None:
    if context.active:
        dist.barrier()


def mean_over_ranks(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Scalars averaged over ranks (each the mean over its equal slice: the global batch's
    mean), for the log; in one process, just their values."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return {name: value.item() for name, value in values.items()}
    # on the training device: CPU tensors for gloo, the rank's GPU for NCCL
    stacked = torch.stack([value.detach().float() for value in values.values()])
    dist.all_reduce(stacked)
    return dict(zip(values, (stacked / dist.get_world_size()).tolist(), strict=True))


class RankSlices(Sampler[list[int]]):
    """The global batches of ``batch_sampler``, each cut to this rank's equal share."""

    def __init__(self, batch_sampler, rank: int, world_size: int):
        self.batch_sampler, self.rank, self.world_size = batch_sampler, rank, world_size

    def __iter__(self):
        for batch in self.batch_sampler:
            share = len(batch) // self.world_size
            yield batch[self.rank * share:(self.rank + 1) * share]

    def __len__(self) -> int:
        return len(self.batch_sampler)


class AllReduceBatchNorm2d(torch.nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics are those of the batch over all ranks (the CPU
    counterpart of ``SyncBatchNorm``); in eval mode, or in one process, plain BatchNorm."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # [N, C, H, W]
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(features)
        from torch.distributed.nn.functional import all_reduce

        channels = features.shape[1]
        count = torch.tensor([features.numel() / channels], dtype=features.dtype)
        sums = all_reduce(torch.cat([features.sum((0, 2, 3)),
                                     (features * features).sum((0, 2, 3)), count]))
        total = sums[-1]
        mean = sums[:channels] / total  # [C]
        var = sums[channels:2 * channels] / total - mean * mean  # biased, as BN normalises
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                            else self.momentum)
                unbiased = var * total / (total - 1).clamp(min=1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
        shape = (1, channels, 1, 1)
        normalised = (features - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            normalised = normalised * self.weight.view(shape) + self.bias.view(shape)
        return normalised


def convert_allreduce_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Every plain ``BatchNorm2d`` of ``module`` as an :class:`AllReduceBatchNorm2d` with the
    same parameters and running statistics (in place; returns the module)."""
    for name, child in module.named_children():
        if type(child) is torch.nn.BatchNorm2d:
            synced = AllReduceBatchNorm2d(child.num_features, child.eps, child.momentum,
                                          child.affine, child.track_running_stats)
            synced.load_state_dict(child.state_dict())
            setattr(module, name, synced.to(child.weight.device if child.affine
                                            else "cpu"))
        else:
            convert_allreduce_batchnorm(child)
    return module


class TrainingStep(torch.nn.Module):
    """The model's training forward (logits and extra loss terms) as one module, so that DDP
    sees every forward of a training step (BGNet's ``training_losses`` included)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict):
        if hasattr(self.model, "training_losses"):
            return self.model.training_losses(batch)
        return self.model(batch["template"], batch["sample"]), {}


def wrap(model: torch.nn.Module, context: DistributedContext,
         device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module, str | None]:
    """(the model to evaluate and save, the training step to call, the BatchNorm that
    synchronises).  One process: the step module around the model, nothing else."""
    if not context.active:
        return model, TrainingStep(model), None
    if device.type == "cuda":
        model, sync = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model), "SyncBatchNorm"
    else:
        model, sync = convert_allreduce_batchnorm(model), "AllReduceBatchNorm2d"
    step = torch.nn.parallel.DistributedDataParallel(
        TrainingStep(model), device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=True)  # a variant may leave a block out of its loss
    return model, step, sync
