"""The hand-written parts of the attention-based competitors (CCNet, DUNet, DANet, Swin U-Net)
against naive loops and library functions."""

from __future__ import annotations

import torch

from bgnet_lite.methods import create_model
from bgnet_lite.methods.attention_nets.ccnet import CrissCrossAttention
from bgnet_lite.methods.attention_nets.danet import ChannelAttention, PositionAttention
from bgnet_lite.methods.attention_nets.dilated_resnet import DilatedResNet
from bgnet_lite.methods.attention_nets.dunet import DUpsampling, patches_to_image
from bgnet_lite.methods.attention_nets.swin_unet import PatchExpand


def _randomised(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """float64, random weights and gamma != 0 (gamma starts at 0, which would hide errors)."""
    torch.manual_seed(seed)
    module = module.double()
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            parameter.copy_(torch.randn_like(parameter) * (0.7 if name == "gamma" else 0.5))
    return module


def test_criss_cross_attention_equals_a_loop_over_row_and_column():
    # convention: pixel (h, w) attends to its column without itself and its whole row, so
    # itself is counted once: H + W - 1 positions, one softmax over all of them
    attention = _randomised(CrissCrossAttention(16))
    features = torch.randn(2, 16, 4, 5, dtype=torch.float64)
    query, key = attention.query(features), attention.key(features)
    value = attention.value(features)
    expected = torch.empty_like(features)
    for n in range(2):
        for h in range(4):
            for w in range(5):
                positions = [(g, w) for g in range(4) if g != h] + [(h, v) for v in range(5)]
                energies = torch.stack([query[n, :, h, w] @ key[n, :, g, v]
                                        for g, v in positions])
                weights = torch.softmax(energies, dim=0)
                attended = sum(weight * value[n, :, g, v]
                               for weight, (g, v) in zip(weights, positions, strict=True))
                expected[n, :, h, w] = attention.gamma * attended + features[n, :, h, w]
    assert torch.allclose(attention(features), expected, atol=1e-10)


def test_criss_cross_starts_as_identity_and_two_passes_reach_every_pixel():
    fresh = CrissCrossAttention(16)
    features = torch.randn(1, 16, 5, 6)
    assert torch.equal(fresh(features), features)  # gamma = 0 at the start (Huang et al.)
    attention = _randomised(CrissCrossAttention(16))
    features = torch.randn(1, 16, 5, 6, dtype=torch.float64, requires_grad=True)
    reached = []
    for passes in (1, 2):
        out = features
        for _ in range(passes):
            out = attention(out)
        (gradient,) = torch.autograd.grad(out[0, :, 0, 0].sum(), features)
        reached.append(gradient.abs().sum(dim=(0, 1)) > 0)  # [H, W] pixels that influence (0, 0)
    cross = torch.zeros(5, 6, dtype=torch.bool)
    cross[0, :], cross[:, 0] = True, True
    assert torch.equal(reached[0], cross)  # one pass: only row 0 and column 0
    assert reached[1].all()  # two passes (R = 2): every pixel


def test_position_attention_equals_a_loop_over_positions():
    attention = _randomised(PositionAttention(16), seed=1)
    features = torch.randn(2, 16, 3, 4, dtype=torch.float64)
    query = attention.query(features).flatten(2)  # [N, 2, 12]
    key, value = attention.key(features).flatten(2), attention.value(features).flatten(2)
    expected = torch.empty(2, 16, 12, dtype=torch.float64)
    for n in range(2):
        for i in range(12):
            weights = torch.softmax(torch.stack([query[n, :, i] @ key[n, :, j]
                                                 for j in range(12)]), dim=0)
            expected[n, :, i] = sum(weights[j] * value[n, :, j] for j in range(12))
    expected = attention.gamma * expected.view(2, 16, 3, 4) + features
    assert torch.allclose(attention(features), expected, atol=1e-10)


def test_channel_attention_equals_a_loop_over_channels():
    attention = _randomised(ChannelAttention(), seed=2)
    features = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    flat = features.flatten(2)
    expected = torch.empty_like(flat)
    for n in range(2):
        for i in range(5):
            energies = torch.stack([flat[n, i] @ flat[n, j] for j in range(5)])
            weights = torch.softmax(energies.max() - energies, dim=0)  # Fu et al.'s code
            expected[n, i] = sum(weights[j] * flat[n, j] for j in range(5))
    expected = attention.gamma * expected.view_as(features) + features
    assert torch.allclose(attention(features), expected, atol=1e-10)


def test_danet_attention_scales_start_at_zero():
    model = create_model("danet", 1, 3, weights="none")
    gammas = [value for name, value in model.named_parameters() if name.endswith("gamma")]
    assert len(gammas) == 2 and all(gamma.item() == 0.0 for gamma in gammas)


def test_dupsampling_rearrangement_is_pixel_shuffle():
    patches = torch.randn(2, 3 * 16, 5, 6)
    assert torch.equal(patches_to_image(patches, 4), torch.nn.functional.pixel_shuffle(patches, 4))
    torch.manual_seed(0)
    dupsample = DUpsampling(8, num_classes=3, ratio=4)
    features = torch.randn(1, 8, 2, 3)
    expected = torch.nn.functional.pixel_shuffle(dupsample.reconstruct(features), 4)
    assert dupsample(features).shape == (1, 3, 8, 12)
    assert torch.equal(dupsample(features), expected)


def test_patch_expand_equals_a_loop_over_blocks():
    torch.manual_seed(0)
    expand = PatchExpand(8, scale=2, out_dim=4)
    tokens = torch.randn(1, 2, 3, 8)
    channels = expand.expand(tokens)  # [1, 2, 3, 2 * 2 * 4], ordered (i, j, c)
    expected = torch.empty(1, 4, 6, 4)
    for h in range(2):
        for w in range(3):
            for i in range(2):
                for j in range(2):
                    start = (i * 2 + j) * 4
                    expected[0, 2 * h + i, 2 * w + j] = channels[0, h, w, start:start + 4]
    expected = torch.nn.functional.layer_norm(expected, (4,), expand.norm.weight, expand.norm.bias)
    assert torch.allclose(expand(tokens), expected, atol=1e-6)


def test_dilated_resnet_output_strides():
    images = torch.rand(2, 1, 1, 64, 96)
    for output_stride, layer4_size in ((8, (8, 12)), (16, (4, 6))):
        encoder = DilatedResNet("resnet50", "none", in_channels=1,
                                output_stride=output_stride).eval()
        with torch.no_grad():
            feats = encoder(*images)
        assert [tuple(f.shape[1:]) for f in feats[:2]] == [(256, 16, 24), (512, 8, 12)]
        assert tuple(feats[3].shape[1:]) == (2048, *layer4_size)


def test_swin_unet_takes_sizes_off_the_window_grid():
    model = create_model("swin-unet", 7, 3, weights="none").eval()
    with torch.no_grad():
        for height, width in ((256, 256), (72, 100)):
            logits = model(*torch.rand(2, 1, 3, height, width))
            assert logits.shape == (1, 7, height, width)
            assert torch.isfinite(logits).all()
