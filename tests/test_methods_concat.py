"""The classical (concatenating) methods of Table 2: SegNet's unpooling, FCN's widened first
convolution, PGA-Net's deep supervision, and parameter counts by hand (chapter 9)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from method_checks import synthetic_pairs

from bgnet_lite.losses import focal_loss
from bgnet_lite.methods import common, create_model
from bgnet_lite.methods.concat import pganet


def count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def conv(in_channels, out_channels, kernel=3, bias=True, batch_norm=False):
    """Hand count of one convolution (+ BatchNorm's weight and bias)."""
    return (kernel * kernel * in_channels * out_channels + bias * out_channels
            + batch_norm * 2 * out_channels)


def test_segnet_unpools_to_the_pooled_positions():
    model = create_model("segnet", 1, 3, weights="none").eval()
    encoded, unpooled = [], []  # encoder maps before pooling; (unpool input, output)
    for block in model.encoder:
        block.register_forward_hook(lambda module, args, output: encoded.append(output))
    model.unpool.register_forward_hook(
        lambda module, args, output: unpooled.append((args[0], output)))
    torch.manual_seed(0)
    with torch.no_grad():
        model(*torch.rand(2, 1, 3, 32, 32))
    assert len(encoded) == len(unpooled) == 5
    for before_pool, (pooled, output) in zip(reversed(encoded), unpooled, strict=True):
        assert output.shape == before_pool.shape
        height, width = pooled.shape[-2:]
        for y in range(height):
            for x in range(width):
                window = before_pool[..., 2 * y:2 * y + 2, 2 * x:2 * x + 2].flatten(2)
                placed = output[..., 2 * y:2 * y + 2, 2 * x:2 * x + 2].flatten(2)
                at_max = window == window.amax(dim=2, keepdim=True)  # [N, C, 4]
                # the decoder's value sits at the encoder's max, zeros elsewhere
                assert (placed[~at_max] == 0).all()
                torch.testing.assert_close(placed.sum(dim=2), pooled[..., y, x])


def test_fcn_widened_conv_gives_the_pretrained_response(monkeypatch):
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True])
    state = {key: value.clone() for key, value in reference.state_dict().items()}
    requested = []

    def fake_state(arch, weights):  # stands for the ImageNet download
        requested.append(arch)
        return state

    monkeypatch.setattr(common, "torchvision_state", fake_state)
    model = create_model("fcn", 1, 3, weights="imagenet").eval()
    reference.eval()
    assert requested == ["resnet50"] and model.pretrained is True
    assert model.net.backbone.conv1.in_channels == 6
    image = torch.rand(1, 3, 64, 64)
    normalized = common.ImageNetNormalize(3)(image)
    with torch.no_grad():
        stacked = model.normalize(common.concat_pair(image, image))  # identical template, sample
        got = model.net.backbone(stacked)["out"]
        stem = reference.maxpool(reference.relu(reference.bn1(reference.conv1(normalized))))
        expected = reference.layer4(reference.layer3(reference.layer2(reference.layer1(stem))))
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)  # 50 layers of float32


def test_fcn_params_are_torchvision_fcn_plus_the_widened_conv():
    model = create_model("fcn", 7, 3, weights="none")
    plain = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None,
                                                         num_classes=7)
    assert count(model) == count(plain) + 64 * 3 * 7 * 7  # three more input channels


def test_fcn_aux_head_adds_a_weighted_loss():
    model = create_model("fcn", 1, 1, weights="none", aux_loss=True, aux_weight=0.5)
    template, sample, mask = synthetic_pairs(count=2, size=32)
    torch.manual_seed(0)
    logits, extra = model.training_losses({"template": template, "sample": sample,
                                           "mask": mask})
    assert logits.shape == (2, 1, 32, 32) and set(extra) == {"aux_focal"}
    assert torch.isfinite(extra["aux_focal"]) and extra["aux_focal"] > 0


def test_pganet_deep_supervision_terms_exist_and_are_finite():
    torch.manual_seed(0)
    model = create_model("pganet", 7, 1, weights="none", side_weight=0.5)
    template, sample, mask = synthetic_pairs(count=2, size=64, num_classes=7)
    batch = {"template": template, "sample": sample, "mask": mask}
    logits, extra = model.training_losses(batch)
    assert logits.shape == (2, 7, 64, 64)
    assert sorted(extra) == sorted(f"side_1/{stride}" for stride in (2, 4, 8, 16, 32))
    for term in extra.values():
        assert torch.isfinite(term) and term > 0
    sum(extra.values()).backward()
    for classifier in model.side_classifiers:
        assert classifier.weight.grad is not None and classifier.weight.grad.abs().sum() > 0
    assert model.fuse_sides.weight.grad is None  # the side terms do not reach the fusion
    ratio = [term / focal_loss(side, mask) for term, side in
             zip(extra.values(), model.forward_details(template, sample)["side_logits"],
                 strict=True)]
    assert all(abs(value.item() - 0.5) < 1e-5 for value in ratio)  # side_weight = 0.5


def test_pganet_prediction_starts_as_the_mean_of_the_side_outputs():
    torch.manual_seed(0)
    model = create_model("pganet", 7, 3, weights="none").eval()
    with torch.no_grad():
        details = model.forward_details(*torch.rand(2, 1, 3, 64, 64))
    torch.testing.assert_close(details["logits"], torch.stack(details["side_logits"]).mean(0))


def test_pganet_downward_skip_is_a_block_max():
    feats = torch.randn(2, 3, 16, 12)
    pooled = pganet.resize(feats, (4, 3))
    for y in range(4):
        for x in range(3):
            block = feats[..., 4 * y:4 * y + 4, 4 * x:4 * x + 4]
            torch.testing.assert_close(pooled[..., y, x], block.amax(dim=(-2, -1)))


def test_unet_params_by_hand():
    model = create_model("unet", 7, 3)  # the original U-Net, base width 16, BatchNorm
    widths = [16, 32, 64, 128, 256]
    expected = 0
    for level, width in enumerate(widths):
        in_channels = 6 if level == 0 else widths[level - 1]
        expected += conv(in_channels, width, bias=False, batch_norm=True)
        expected += conv(width, width, bias=False, batch_norm=True)
    for level in range(4, 0, -1):
        expected += conv(widths[level], widths[level - 1], kernel=2)  # up-convolution
        expected += conv(2 * widths[level - 1], widths[level - 1], bias=False, batch_norm=True)
        expected += conv(widths[level - 1], widths[level - 1], bias=False, batch_norm=True)
    expected += conv(16, 7, kernel=1)
    assert count(model) == expected


def test_unet_original_refuses_imagenet_and_smp_encoder_builds():
    with pytest.raises(ValueError, match="no ImageNet weights"):
        create_model("unet", 1, 3, weights="imagenet")
    model = create_model("unet", 1, 3, weights="none", encoder="resnet18").eval()
    assert model.net.encoder.conv1.in_channels == 6 and model.pretrained is False
    with torch.no_grad():
        assert model(*torch.rand(2, 1, 3, 40, 72)).shape == (1, 1, 40, 72)


def test_segnet_params_by_hand():
    model = create_model("segnet", 1, 3, weights="none")
    encoder = [(6, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
               (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    decoder = [(512, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 256),
               (256, 256), (256, 256), (256, 128), (128, 128), (128, 64), (64, 64)]
    expected = sum(conv(i, o, batch_norm=True) for i, o in encoder + decoder)
    expected += conv(64, 1)  # the classifier, Caffe's conv1_1_D
    assert count(model) == expected


def test_pganet_params_by_hand():
    model = create_model("pganet", 1, 3, weights="none")
    resnet = torchvision.models.resnet18()
    expected = count(resnet) - count(resnet.fc) + 64 * 3 * 7 * 7  # widened first conv
    levels, width = (64, 64, 128, 256, 512), 96
    expected += sum(conv(c, width, kernel=1, bias=False, batch_norm=True) for c in levels)
    expected += 5 * conv(5 * width, width, bias=False, batch_norm=True)  # pyramid fusion
    expected += 4 * (conv(width, width, kernel=1) + conv(width, width, bias=False,
                                                          batch_norm=True))  # attention
    expected += 5 * (conv(width, 1, kernel=1) + 2 * conv(1, 1))  # side outputs + refinement
    expected += conv(5, 1, kernel=1)  # fusion of the side outputs
    assert count(model) == expected


def test_deeplabv3plus_uses_the_papers_atrous_rates():
    model = create_model("deeplabv3plus", 1, 3, weights="none")
    dilations = sorted({module.dilation[0] for module in model.net.decoder.modules()
                        if isinstance(module, torch.nn.Conv2d) and module.dilation[0] > 1})
    assert dilations == [6, 12, 18]
    assert model.net.encoder.conv1.in_channels == 6
