"""Every registered method of Tables 2-3 (and the classical baseline) obeys one contract:
built offline by name, ``model(template, sample) -> [N, K, H, W]`` logits for binary and
7-class data, and (when it learns) overfits two pairs deterministically."""

from __future__ import annotations

import pytest
import torch
from method_checks import no_network, overfit_losses  # noqa: F401  (no_network: fixture)

from bgnet_lite.methods import get_method, method_names
from bgnet_lite.methods.summary import build_offline

COMPETITORS = [name for name in method_names() if not name.startswith("bgnet-")]
DEEPPCB_CLASSES = 7  # background + DeepPCB's six defect types
# (steps, learning rate) of the overfit test; (40, 1e-3) unless a method needs otherwise
OVERFIT = {
    # the decoder sees only sample features gated by template differences, which the pairs'
    # 3-px shift fills with noise: it needs a larger step to overfit in 40
    "siamese-unet": (40, 3e-3),
    # a stride-8 output blurs the 10-px square and PFENet's dropout of 0.5 slows it down
    "pfenet": (80, 1e-3),
}


def build(name: str, num_classes: int, in_channels: int = 3) -> torch.nn.Module:
    """No pretrained weights in tests (no weight hub is reachable here), seed 0."""
    return build_offline(name, num_classes, in_channels)


def test_every_family_of_table_2_is_present():
    families = {get_method(name).family for name in COMPETITORS}
    assert families >= {"Classical", "Attention-based", "Foreground generalization",
                        "Background generalization", "Beyond the paper"}
    paper_rows = {get_method(name).paper_name for name in method_names()} - {None}
    assert len(paper_rows) == 15  # the paper's 15 rows of Tables 2-3, BGNet included


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("name", COMPETITORS)
def test_builds_offline_with_logits_per_class(name):
    sizes = [64, 128] + ([256] if torch.cuda.is_available() else [])
    for num_classes in (1, DEEPPCB_CLASSES):
        model = build(name, num_classes).eval()
        assert getattr(model, "pretrained", False) is False
        for size in sizes:
            template, sample = torch.rand(2, 2, 3, size, size)
            with torch.no_grad():
                logits = model(template, sample)
            assert logits.shape == (2, num_classes, size, size), (name, size)
            assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", COMPETITORS)
def test_greyscale_and_refusals(name):
    model = build(name, 1, in_channels=1).eval()
    with torch.no_grad():
        assert model(*torch.rand(2, 1, 1, 64, 64)).shape == (1, 1, 64, 64)
    with pytest.raises(ValueError, match="same shape"):
        model(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 96))


@pytest.mark.parametrize("name", COMPETITORS)
def test_overfits_two_pairs_deterministically(name):
    model = build(name, 1, in_channels=1)
    if not any(p.requires_grad for p in model.parameters()):
        pytest.skip(f"{name} learns nothing (evaluated without training)")
    steps, lr = OVERFIT.get(name, (40, 1e-3))
    logits, mask, losses = overfit_losses(model, steps, lr)
    assert losses[-1] < 0.25 * losses[0], (name, losses[0], losses[-1])
    prob = torch.sigmoid(logits[:, 0])
    assert prob[mask == 1].mean() > prob[mask == 0].mean() + 0.3  # the square stands out
    _, _, repeated = overfit_losses(build(name, 1, in_channels=1), 3, lr)
    assert repeated == losses[:3]  # same seed, same data -> identical losses
