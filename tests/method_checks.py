"""Shared checks for every registered method (the contract and the two-pair overfit test)."""

from __future__ import annotations

import socket

import pytest
import torch

from bgnet_lite.losses import focal_loss


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: every method must build offline."""

    def refuse(*args, **kwargs):
        raise AssertionError("a method tried to open a network connection while building")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def synthetic_pairs(count=4, size=64, seed=0, channels=1, num_classes=1):
    """Textured templates; sample = template shifted by a few pixels + a bright square.

    Returns template, sample [count, channels, size, size] and mask [count, size, size]: 0/1
    for ``num_classes=1``, else class ids (the square's class cycles through 1 .. K-1)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 1, size // 8, size // 8, generator=generator)
    template = torch.nn.functional.interpolate(coarse, size=(size, size), mode="nearest")
    template = (0.6 * template + 0.2 * torch.rand(count, 1, size, size, generator=generator))
    sample = torch.empty_like(template)
    mask = torch.zeros(count, size, size, dtype=torch.long if num_classes > 1 else torch.float)
    for index in range(count):
        shift = [int(v) for v in torch.randint(-3, 4, (2,), generator=generator)]
        sample[index] = torch.roll(template[index], shifts=shift, dims=(1, 2))
        y, x = (int(v) for v in torch.randint(8, size - 20, (2,), generator=generator))
        sample[index, :, y:y + 10, x:x + 10] = 1.0
        mask[index, y:y + 10, x:x + 10] = 1 + index % max(num_classes - 1, 1)
    return template.repeat(1, channels, 1, 1), sample.repeat(1, channels, 1, 1), mask


def overfit_losses(model: torch.nn.Module, steps: int, lr: float = 1e-3, seed: int = 0,
                   size: int = 64, channels: int = 1):
    """Adam on two synthetic pairs through the engine's path (``training_losses`` when the
    model has it, else ``forward``); returns the last logits, the mask and the focal losses."""
    torch.manual_seed(seed)
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    template, sample, mask = synthetic_pairs(count=2, size=size, channels=channels)
    batch = {"template": template, "sample": sample, "mask": mask,
             "flow": torch.full((2, 2, size // 8, size // 8), float("nan"))}
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        if hasattr(model, "training_losses"):
            logits, extra = model.training_losses(batch)
        else:
            logits, extra = model(template, sample), {}
        focal = focal_loss(logits, mask)
        loss = focal + sum(extra.values())
        loss.backward()
        optimizer.step()
        losses.append(focal.item())
    return logits.detach(), mask, losses
