"""Grad-CAM on BGNet's taps (Figures 4-5): each tap is the layer asked for, template and sample
maps are their own, and the maps equal a Grad-CAM computed by hand from the tap's activation
and gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bgnet_lite.cam import feature_cams, mass_inside
from bgnet_lite.methods import create_model


@pytest.fixture(scope="module")
def pair_and_model():
    torch.manual_seed(0)
    model = create_model("bgnet-s5", weights="none").eval()
    template = torch.rand(1, 3, 64, 64)
    sample = template.clone()
    sample[:, :, 20:30, 20:30] = 1.0  # a "defect"
    mask = np.zeros((64, 64), np.float32)
    mask[20:30, 20:30] = 1
    return model, template, sample, mask


def hand_gradcam(model, template, sample, mask, tap):
    """Grad-CAM by its definition: ReLU(sum_c mean_xy(dy/dA_c) A_c), upsampled, min-max."""
    stored = {}
    handle = model.taps[tap].register_forward_hook(
        lambda module, inputs, output: stored.update(activation=output))
    try:
        logits = model(template, sample)
        activation = stored["activation"]
        activation.retain_grad()
        (logits[0, 0] * torch.from_numpy(mask)).sum().backward()
    finally:
        handle.remove()
    weights = activation.grad.mean(dim=(2, 3), keepdim=True)  # [1, C, 1, 1]
    cam = F.relu((weights * activation).sum(1, keepdim=True))  # [1, 1, h, w]
    cam = F.interpolate(cam, size=mask.shape, mode="bilinear", align_corners=False)[0, 0]
    cam = cam.detach().numpy()
    cam = cam - cam.min()
    return cam / cam.max() if cam.max() > 0 else cam


def test_each_tap_is_the_layer_asked_for(pair_and_model):
    model, template, sample, mask = pair_and_model
    cams = feature_cams(model, template, sample, mask,
                        taps=("template_8", "sample_8", "difference_8", "template_32"))
    assert all(cam.shape == (64, 64) for cam in cams.values())
    # the shared backbone sees both images in one call; the taps keep them apart
    assert not np.allclose(cams["template_8"], cams["sample_8"])
    for tap in ("template_8", "difference_8"):
        expected = hand_gradcam(model, template, sample, mask, tap)
        # grad-cam resizes with OpenCV: compare the maps' pattern, not every last digit
        assert np.corrcoef(cams[tap].ravel(), expected.ravel())[0, 1] > 0.99


def test_changing_a_taps_input_changes_its_map(pair_and_model):
    model, template, sample, mask = pair_and_model
    before = feature_cams(model, template, sample, mask, taps=("template_8",))["template_8"]
    other_template = template.flip(-1)
    after = feature_cams(model, other_template, sample, mask, taps=("template_8",))
    assert not np.allclose(before, after["template_8"])


def test_mass_inside_by_hand():
    cam = np.array([[1.0, 3.0], [0.0, 4.0]])
    assert mass_inside(cam, np.array([[0, 1], [0, 1]])) == pytest.approx(7 / 8)
    assert np.isnan(mass_inside(np.zeros((2, 2)), np.ones((2, 2))))
