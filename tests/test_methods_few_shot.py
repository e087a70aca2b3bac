"""The few-shot methods' own parts (TGRNet, PFENet): masked average pooling and the prior mask
against naive loops, the support bank (filling, checkpoint, template before training) and
the order of the K > 1 logits."""

from __future__ import annotations

import io

import pytest
import torch

from bgnet_lite.methods import create_model
from bgnet_lite.methods.few_shot.support import (
    SupportBank,
    binary_targets,
    masked_average_pooling,
    prior_mask,
)


def test_masked_average_pooling_matches_a_loop():
    generator = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 5, 4, 6, generator=generator)
    mask = (torch.rand(2, 1, 4, 6, generator=generator) > 0.5).float()
    mask[1] = 0  # an empty mask gives a zero prototype
    expected = torch.zeros(2, 5, 1, 1)
    for n in range(2):
        total, area = torch.zeros(5), 0.0
        for y in range(4):
            for x in range(6):
                if mask[n, 0, y, x]:
                    total += feats[n, :, y, x]
                    area += 1
        expected[n, :, 0, 0] = total / (area + 5e-4)
    assert torch.allclose(masked_average_pooling(feats, mask), expected, atol=1e-6)
    assert masked_average_pooling(feats, mask)[1].abs().max() == 0


def test_prior_mask_matches_a_loop():
    generator = torch.Generator().manual_seed(1)
    query = torch.randn(2, 4, 3, 5, generator=generator)
    support = torch.randn(2, 4, 4, 2, generator=generator)
    mask = (torch.rand(2, 1, 4, 2, generator=generator) > 0.4).float()
    expected = torch.zeros(2, 1, 3, 5)
    for n in range(2):
        best = torch.full((3, 5), -2.0)
        for y in range(3):
            for x in range(5):
                q = query[n, :, y, x]
                for v in range(4):
                    for u in range(2):
                        s = support[n, :, v, u] * mask[n, 0, v, u]
                        cosine = (q @ s) / (q.norm() * s.norm() + 1e-7)
                        best[y, x] = max(best[y, x], cosine)
        expected[n, 0] = (best - best.min()) / (best.max() - best.min() + 1e-7)
    prior = prior_mask(query, support, mask)
    assert torch.allclose(prior, expected, atol=1e-5)
    assert prior.amin() == 0 and abs(prior.amax().item() - 1) < 1e-5


def test_binary_targets_per_class():
    mask = torch.tensor([[[0, 2], [3, 2]]])
    targets = binary_targets(mask, num_classes=4)  # classes 1, 2, 3
    assert targets.shape == (1, 3, 2, 2)
    assert targets[0, 0].sum() == 0
    assert targets[0, 1].tolist() == [[0, 1], [0, 1]]
    assert targets[0, 2].tolist() == [[0, 0], [1, 0]]
    assert binary_targets(torch.tensor([[[0.0, 1.0]]]), 1).tolist() == [[[[0.0, 1.0]]]]


def _batch(num_classes: int, size: int = 64, channels: int = 3):
    """Two pairs; only sample 1 shows a defect: class 3 (K > 1) or 1 (K = 1) in a square."""
    generator = torch.Generator().manual_seed(2)
    template = torch.rand(2, channels, size, size, generator=generator)
    sample = template.clone()
    sample[1, :, 10:20, 30:40] = 1.0
    mask = torch.zeros(2, size, size, dtype=torch.long if num_classes > 1 else torch.float)
    mask[1, 10:20, 30:40] = 3 if num_classes > 1 else 1
    return {"template": template, "sample": sample, "mask": mask}


def test_support_bank_fills_with_the_sample_of_its_class():
    batch = _batch(num_classes=7)
    bank = SupportBank(6, 3)
    bank.capture(batch["sample"], binary_targets(batch["mask"], 7))
    assert bank.filled.tolist() == [False, False, True, False, False, False]
    assert bank.seen.tolist() == [0, 0, 1, 0, 0, 0]
    assert torch.equal(bank.images[2], batch["sample"][1])
    assert torch.equal(bank.masks[2, 0], (batch["mask"][1] == 3).float())
    supports = bank.supports(batch["template"])
    assert supports[0][0] is batch["template"] and supports[0][1].abs().max() == 0
    assert torch.equal(supports[2][0][0], batch["sample"][1])


def test_support_choice_first_and_reservoir_deterministic():
    images = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 1, 4, 4).contiguous()
    targets = torch.ones(6, 1, 4, 4)
    first = SupportBank(1, 1, update="first")
    first.capture(images, targets)
    assert first.images[0, 0, 0, 0] == 0 and first.seen.item() == 6
    chosen = []
    for _ in range(2):
        bank = SupportBank(1, 1)
        for index in range(6):  # one sample per batch, the same data order twice
            bank.capture(images[index:index + 1], targets[index:index + 1])
        chosen.append(bank.images[0, 0, 0, 0].item())
    assert chosen[0] == chosen[1]
    assert chosen[0] != 0  # 1/6 * 1/5 ... reservoir replaced the first sample here


@pytest.mark.parametrize("name", ["tgrnet", "pfenet"])
def test_support_bank_survives_a_checkpoint(name):
    torch.manual_seed(0)
    model = create_model(name, 7, 3, weights="none")
    batch = _batch(num_classes=7)
    model.train()
    model.training_losses(batch)
    assert model.bank.filled.tolist() == [False, False, True, False, False, False]
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    restored = create_model(name, 7, 3, weights="none")
    assert restored.bank.images.shape != model.bank.images.shape  # nothing captured yet
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for key in ("images", "masks", "filled", "seen", "rng_state"):
        assert torch.equal(getattr(restored.bank, key), getattr(model.bank, key)), key
    model.eval(), restored.eval()
    with torch.no_grad():
        assert torch.equal(model(batch["template"], batch["sample"]),
                           restored(batch["template"], batch["sample"]))


def test_before_training_the_support_is_the_template():
    torch.manual_seed(0)
    model = create_model("pfenet", 1, 1, weights="none").eval()
    assert not model.bank.filled.any()
    template, sample = torch.rand(2, 2, 1, 64, 64)
    ((support_image, support_mask),) = model.bank.supports(template)
    assert support_image is template and support_mask.shape == (2, 1, 64, 64)
    assert support_mask.abs().max() == 0
    with torch.no_grad():
        before = model(template, sample)
        # a defect-free batch captures nothing: the template stays the support
        model.bank.capture(sample, torch.zeros(2, 1, 64, 64))
        assert torch.equal(model(template, sample), before)
        # a captured defect changes the support and so the output
        model.bank.capture(sample, torch.ones(2, 1, 64, 64))
        assert not torch.equal(model(template, sample), before)


@pytest.mark.parametrize("name", ["tgrnet", "pfenet"])
def test_multiclass_logits_are_background_then_one_episode_per_class(name):
    """K = 3 with class 2's support captured: channel 0 is 0, channel 1 is what a binary model
    with the same weights gives with no support (the template), channel 2 what it gives with
    class 2's support."""
    torch.manual_seed(0)
    multi = create_model(name, 3, 3, weights="none").eval()
    batch = _batch(num_classes=3)
    batch["mask"][1, 10:20, 30:40] = 2
    multi.bank.capture(batch["sample"], binary_targets(batch["mask"], 3))
    assert multi.bank.filled.tolist() == [False, True]
    weights = {k: v for k, v in multi.state_dict().items() if not k.startswith("bank.")}
    binary = create_model(name, 1, 3, weights="none").eval()
    binary.load_state_dict(weights, strict=False)
    with torch.no_grad():
        logits = multi(batch["template"], batch["sample"])
        without_support = binary(batch["template"], batch["sample"])
        binary.bank.capture(batch["sample"], (batch["mask"] == 2).float().unsqueeze(1))
        with_support = binary(batch["template"], batch["sample"])
    assert logits.shape == (2, 3, 64, 64)
    assert logits[:, 0].abs().max() == 0
    assert torch.allclose(logits[:, 1:2], without_support, atol=1e-5)
    assert torch.allclose(logits[:, 2:3], with_support, atol=1e-5)
    assert not torch.allclose(without_support, with_support, atol=1e-3)
