"""The Siamese competitors (Siamese U-Net, DSSSNet, GWNet): one shared encoder, what an
identical pair gives, and the hand-written parts against independent references (chapter 9)."""

from __future__ import annotations

import math

import pytest
import torch

from bgnet_lite.methods import create_model
from bgnet_lite.methods.siamese.dsssnet import precision_recall_loss, shift_tolerant_difference
from bgnet_lite.methods.siamese.gwnet import NonLocalAttention, SiameseResNet34
from bgnet_lite.methods.siamese.lovasz import lovasz_extension, lovasz_hinge, lovasz_softmax
from bgnet_lite.methods.siamese.siamese_unet import dissimilarity_gate, encode_pair
from bgnet_lite.methods.siamese.unet_parts import UNetEncoder

SIAMESE = {"siamese-unet": UNetEncoder, "dsssnet": UNetEncoder, "gwnet": SiameseResNet34}


def build(name: str, num_classes: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    options = {"weights": "none"} if name == "gwnet" else {}
    return create_model(name, num_classes, 3, **options).eval()


@pytest.mark.parametrize("name", list(SIAMESE))
def test_one_encoder_serves_template_and_sample(name):
    model = build(name)
    encoders = [m for m in model.modules() if isinstance(m, SIAMESE[name])]
    assert encoders == [model.encoder]  # one encoder object, no second branch
    torch.manual_seed(1)
    template, sample = torch.rand(2, 2, 3, 64, 64)
    with torch.no_grad():
        template_feats, sample_feats = encode_pair(model.encoder, template, sample)
        alone_t, alone_s = model.encoder(template), model.encoder(sample)
        swapped_t, swapped_s = encode_pair(model.encoder, sample, template)
        same_t, same_s = encode_pair(model.encoder, sample, sample)
    for level in range(5):
        torch.testing.assert_close(template_feats[level], alone_t[level])
        torch.testing.assert_close(sample_feats[level], alone_s[level])
        torch.testing.assert_close(swapped_t[level], sample_feats[level])
        torch.testing.assert_close(swapped_s[level], template_feats[level])
        assert torch.equal(same_t[level], same_s[level])  # identical pair, identical features
        assert not torch.allclose(template_feats[level], sample_feats[level])


@pytest.mark.parametrize("name", ["siamese-unet", "gwnet"])
def test_identical_pairs_give_one_answer_whatever_the_image(name):
    """Both compare only differences: every skip (and GWNet's self - cross bottleneck) is 0
    for an identical pair, so the logits cannot depend on the image."""
    model = build(name)
    torch.manual_seed(2)
    first, second, other = torch.rand(3, 1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(first, first), model(second, second))
        assert not torch.allclose(model(first, first), model(first, other))


def test_gwnet_bottleneck_is_zero_for_an_identical_pair_and_shares_its_masks():
    model = build("gwnet")
    deep = torch.randn(1, 512, 2, 3)
    with torch.no_grad():
        assert torch.equal(model.bottleneck(deep, deep), torch.zeros_like(deep))
    assert all(stage.mask_net is model.mask_net for stage in model.up_stages)  # recurrent


def test_dissimilarity_gate_matches_hand_values():
    template = torch.tensor([1.0, 2.0, -1.0, 0.5])
    sample = torch.tensor([1.0, 0.0, 2.0, 0.5])
    expected = torch.tensor([0.0, 0.0 * math.tanh(2.0), 2.0 * math.tanh(3.0), 0.0])
    torch.testing.assert_close(dissimilarity_gate(template, sample), expected)


def naive_non_local(attention: NonLocalAttention, query, key, value) -> torch.Tensor:
    """Position by position: softmax over every key position of q_i . k_j / sqrt(C), the
    values summed with those weights, plus the value input (the residual)."""
    queries = attention.query(query)[0]  # [C/r, H, W]
    keys = attention.key(key)[0]
    values = attention.value(value)[0]  # [C, H, W]
    channels, height, width = value.shape[1:]
    positions = [(y, x) for y in range(height) for x in range(width)]
    out = torch.empty(channels, height, width)
    for qy, qx in positions:
        scores = [float((queries[:, qy, qx] * keys[:, ky, kx]).sum()) / math.sqrt(channels)
                  for ky, kx in positions]
        top = max(scores)
        weights = [math.exp(s - top) for s in scores]
        total = sum(weights)
        out[:, qy, qx] = sum(w / total * values[:, ky, kx]
                             for w, (ky, kx) in zip(weights, positions, strict=True))
    return out.unsqueeze(0) + value


def test_gwnet_cross_attention_matches_a_naive_softmax_loop():
    torch.manual_seed(3)
    attention = NonLocalAttention(64, reduction=8)
    sample, template = torch.randn(2, 1, 64, 3, 4)
    with torch.no_grad():
        cross = attention(sample, template, template)
        expected = naive_non_local(attention, sample, template, template)
    torch.testing.assert_close(cross, expected, atol=1e-5, rtol=1e-5)


def test_shift_tolerant_difference_matches_a_naive_neighbourhood_loop():
    torch.manual_seed(4)
    template, sample = torch.randn(2, 1, 2, 5, 6)
    got = shift_tolerant_difference(template, sample, pool_size=3)
    expected = torch.empty_like(sample)
    for c in range(2):
        for y in range(5):
            for x in range(6):
                window = template[0, c, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2]
                value = float(sample[0, c, y, x])
                low, high = float(window.min()), float(window.max())
                expected[0, c, y, x] = max(value - high, 0.0) + max(low - value, 0.0)
    torch.testing.assert_close(got, expected)
    shifted = torch.roll(template, shifts=1, dims=-1)  # a one-cell shift is tolerated
    assert torch.equal(shift_tolerant_difference(template, shifted, 3)[..., 1:-1],
                       torch.zeros(1, 2, 5, 4))


def brute_force_lovasz(errors: list[float], foreground: list[int]) -> float:
    """The Lovász extension of the Jaccard loss from its definition: pixels by decreasing
    error, each step's increase of J(M) = |M| / |F u M| over the growing set M."""
    order = sorted(range(len(errors)), key=lambda i: -errors[i])
    truth = {i for i, f in enumerate(foreground) if f}
    total, previous, mispredicted = 0.0, 0.0, set()
    for index in order:
        mispredicted.add(index)
        jaccard = len(mispredicted) / len(truth | mispredicted)
        total += errors[index] * (jaccard - previous)
        previous = jaccard
    return total


def test_lovasz_extension_matches_its_definition():
    torch.manual_seed(5)
    for _ in range(5):
        errors = torch.rand(9)
        foreground = (torch.rand(9) > 0.5).long()
        got = lovasz_extension(errors, foreground)
        assert got.item() == pytest.approx(brute_force_lovasz(errors.tolist(),
                                                              foreground.tolist()), abs=1e-6)


def test_lovasz_hinge_known_values():
    target = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])  # [1, 2, 3]
    perfect = 2 * (2 * target - 1)  # every margin >= 1
    assert lovasz_hinge(perfect, target).item() == 0.0
    # two pixels wrong by a margin of 2: each hinge error is 3, on a 0/1 pattern the extension
    # is the set function, so the loss is 3 (1 - IoU) of the thresholded prediction
    wrong = perfect.clone()
    wrong[0, 0, 0], wrong[0, 0, 2] = -2.0, 2.0
    predicted = wrong > 0
    iou = (predicted & (target > 0)).sum() / (predicted | (target > 0)).sum()
    assert lovasz_hinge(wrong, target).item() == pytest.approx(3 * (1 - iou.item()))


def test_lovasz_hinge_averages_images_of_the_definition():
    torch.manual_seed(6)
    logits, target = torch.randn(2, 1, 3, 3), (torch.rand(2, 3, 3) > 0.6).float()
    per_image = []
    for n in range(2):
        signs = (2 * target[n] - 1).flatten()
        hinge = torch.relu(1 - logits[n, 0].flatten() * signs)
        per_image.append(brute_force_lovasz(hinge.tolist(), target[n].flatten().tolist()))
    assert lovasz_hinge(logits, target).item() == pytest.approx(sum(per_image) / 2, abs=1e-6)


def test_lovasz_softmax_matches_the_definition_per_present_class():
    torch.manual_seed(7)
    probabilities = torch.softmax(torch.randn(1, 4, 3, 3), dim=1)
    target = torch.tensor([[[0, 0, 2], [2, 0, 0], [1, 1, 0]]])  # class 3 absent
    expected = []
    for c in (0, 1, 2):
        foreground = (target == c).flatten().float()
        errors = (foreground - probabilities[0, c].flatten()).abs()
        expected.append(brute_force_lovasz(errors.tolist(), foreground.tolist()))
    got = lovasz_softmax(probabilities, target)
    assert got.item() == pytest.approx(sum(expected) / 3, abs=1e-6)
    one_hot = torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).float()
    assert lovasz_softmax(one_hot, target).item() == 0.0


def test_precision_recall_term_hand_value():
    logits = torch.tensor([[[[0.0, 0.0]]]])  # p = 0.5 on two pixels, [1, 1, 1, 2]
    mask = torch.tensor([[[1.0, 0.0]]])
    # TP = 0.5, predicted = 1, actual = 1, eps = 1: P = 1.5 / 2, R = 1.5 / 2
    assert precision_recall_loss(logits, mask, 0.3).item() == pytest.approx(0.25)


@pytest.mark.parametrize("num_classes", [1, 7])
def test_dsssnet_losses_are_extra_terms_on_its_prediction(num_classes):
    model = build("dsssnet", num_classes)
    torch.manual_seed(8)
    template, sample = torch.rand(2, 2, 3, 32, 48)
    mask = (torch.rand(2, 32, 48) > 0.9).long() * (num_classes - 1 or 1)
    mask = mask.float() if num_classes == 1 else mask
    batch = {"template": template, "sample": sample, "mask": mask}
    with torch.no_grad():
        logits, extra = model.training_losses(batch)
        outputs = model.forward_outputs(template, sample)
        torch.testing.assert_close(logits, model(template, sample))
    assert len(outputs) == 4 and all(o.shape == (2, num_classes, 32, 48) for o in outputs)
    assert set(extra) == {"weighted_ce", "lovasz", "precision_recall"}  # no focal term
    assert all(value.dim() == 0 and value > 0 for value in extra.values())
