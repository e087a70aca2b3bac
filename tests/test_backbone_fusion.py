"""ResNet-18 backbone (weights policy, channels, shapes) and the fusion decoder."""

import math
import urllib.error
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision

from bgnet_lite.methods import common as common_module
from bgnet_lite.methods.bgnet import backbone as backbone_module
from bgnet_lite.methods.bgnet.backbone import (
    BACKBONE_CHANNELS,
    BACKBONE_STRIDES,
    ResNet18Backbone,
    widen_first_conv,
)
from bgnet_lite.methods.bgnet.fusion import FusionDecoder

WEIGHT_FILE = "resnet18-f37072fd.pth"  # torchvision's ImageNet ResNet-18 file name


REAL_DOWNLOAD = backbone_module.download_imagenet_state_dict


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """A torch hub folder without cached weights and a download that fails like offline."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline_download():
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(backbone_module, "download_imagenet_state_dict", offline_download)
    monkeypatch.setattr(common_module, "_FAILED", {})
    return tmp_path


@pytest.fixture
def cached_hub(tmp_path, monkeypatch):
    """A torch hub folder holding a (seeded, not ImageNet) resnet18 state dict under the
    ImageNet file name; a download attempt fails the test."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_download():
        raise AssertionError("must not download when the file is cached")

    monkeypatch.setattr(backbone_module, "download_imagenet_state_dict", no_download)
    monkeypatch.setattr(common_module, "_FAILED", {})
    torch.manual_seed(123)
    state = torchvision.models.resnet18(weights=None).state_dict()
    (tmp_path / "checkpoints").mkdir()
    torch.save(state, tmp_path / "checkpoints" / WEIGHT_FILE)
    return state


def expected_size(size, stride):
    # every stride-2 stage of ResNet-18 (conv1, maxpool, layer2-4) maps n -> ceil(n / 2)
    for _ in range(int(math.log2(stride))):
        size = math.ceil(size / 2)
    return size


@pytest.mark.parametrize("in_channels", [1, 3, 6])
@pytest.mark.parametrize("height,width", [(64, 64), (70, 90)])
def test_backbone_channels_and_shapes(in_channels, height, width):
    torch.manual_seed(0)
    backbone = ResNet18Backbone(in_channels, weights="none").eval()
    with torch.no_grad():
        feats = backbone(torch.rand(2, in_channels, height, width))
    assert len(feats) == 5
    for level, channels, stride in zip(feats, BACKBONE_CHANNELS, BACKBONE_STRIDES, strict=True):
        assert level.shape == (
            2, channels, expected_size(height, stride), expected_size(width, stride)
        )
    assert BACKBONE_CHANNELS == (64, 64, 128, 256, 512)
    assert BACKBONE_STRIDES == (2, 4, 8, 16, 32)


def test_weights_none_is_silent_random_init():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backbone = ResNet18Backbone(3, weights="none")
    assert not backbone.pretrained


def test_auto_warns_and_falls_back_when_download_fails(empty_hub):
    with pytest.warns(UserWarning, match="RANDOM initialisation") as record:
        backbone = ResNet18Backbone(3, weights="auto")
    assert not backbone.pretrained
    message = str(record[0].message)
    assert "Name or service not known" in message  # says why
    assert str(empty_hub / "checkpoints" / WEIGHT_FILE) in message  # says how to fix it


def test_imagenet_raises_clear_error_when_unavailable(empty_hub):
    with pytest.raises(RuntimeError, match="could not load ImageNet ResNet-18 weights") as info:
        ResNet18Backbone(3, weights="imagenet")
    assert WEIGHT_FILE in str(info.value)


def test_unknown_weights_choice_is_refused():
    with pytest.raises(ValueError, match="weights must be one of"):
        ResNet18Backbone(3, weights="imagenet21k")
    with pytest.raises(ValueError, match="in_channels"):
        ResNet18Backbone(4, weights="none")


def test_auto_uses_cached_file_without_download(cached_hub):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backbone = ResNet18Backbone(3, weights="auto")
    assert backbone.pretrained
    assert torch.equal(backbone.stem[0].weight, cached_hub["conv1.weight"])
    assert torch.equal(backbone.layer4[1].conv2.weight, cached_hub["layer4.1.conv2.weight"])
    assert torch.equal(backbone.stem[1].running_var, cached_hub["bn1.running_var"])


def test_six_channel_conv1_gets_pretrained_kernel_halved_twice(cached_hub):
    backbone = ResNet18Backbone(6, weights="imagenet")
    kernel = cached_hub["conv1.weight"]  # [64, 3, 7, 7]
    assert backbone.stem[0].weight.shape == (64, 6, 7, 7)
    assert torch.allclose(backbone.stem[0].weight[:, :3], kernel / 2)
    assert torch.allclose(backbone.stem[0].weight[:, 3:], kernel / 2)


def test_widened_conv_on_stacked_copies_equals_original():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False)
    images = torch.rand(2, 3, 20, 20)
    wide = widen_first_conv(conv, 2)
    assert wide.in_channels == 6
    assert torch.allclose(wide(torch.cat([images, images], 1)), conv(images), atol=1e-6)


def test_greyscale_is_rgb_with_three_equal_channels():
    torch.manual_seed(2)
    rgb = ResNet18Backbone(3, weights="none").eval()
    grey = ResNet18Backbone(1, weights="none").eval()
    grey.load_state_dict(rgb.state_dict())
    images = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        for a, b in zip(grey(images), rgb(images.repeat(1, 3, 1, 1)), strict=True):
            assert torch.allclose(a, b, atol=1e-6)


def test_input_normalisation_is_imagenet_mean_std():
    torch.manual_seed(3)
    normalising = ResNet18Backbone(3, weights="none").eval()
    raw = ResNet18Backbone(3, weights="none", normalize_input=False).eval()
    raw.load_state_dict(normalising.state_dict())
    images = torch.rand(1, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(
            normalising(images)[-1], raw((images - mean) / std)[-1], atol=1e-5
        )


def test_backbone_refuses_wrong_channel_count():
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        ResNet18Backbone(3, weights="none")(torch.rand(1, 1, 64, 64))


def random_pyramid(batch, height, width, requires_grad=False):
    return [
        torch.randn(
            batch, channels, expected_size(height, stride), expected_size(width, stride),
            requires_grad=requires_grad,
        )
        for channels, stride in zip(BACKBONE_CHANNELS, BACKBONE_STRIDES, strict=True)
    ]


@pytest.mark.parametrize("num_classes", [1, 7])
@pytest.mark.parametrize("height,width", [(64, 64), (70, 90)])
def test_decoder_output_shape(num_classes, height, width):
    torch.manual_seed(4)
    decoder = FusionDecoder(num_classes=num_classes)
    logits = decoder(random_pyramid(2, height, width), (height, width))
    assert logits.shape == (2, num_classes, height, width)


def test_decoder_uses_every_scale():
    torch.manual_seed(5)
    decoder = FusionDecoder(num_classes=1)
    feats = random_pyramid(1, 64, 64, requires_grad=True)
    decoder(feats, (64, 64)).square().sum().backward()
    for level in feats:
        assert level.grad.abs().sum() > 0
    for name, parameter in decoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_head_before_upsampling_equals_head_after():
    # the decoder applies the 1x1 head at 1/2 and then upsamples; a 1x1 conv on the
    # upsampled 64-channel map must give the same logits
    torch.manual_seed(6)
    decoder = FusionDecoder(num_classes=3).eval()
    captured = {}
    decoder.head.register_forward_hook(lambda module, args, out: captured.update(half=args[0]))
    with torch.no_grad():
        logits = decoder(random_pyramid(1, 70, 90), (70, 90))
        upsampled = F.interpolate(
            captured["half"], size=(70, 90), mode="bilinear", align_corners=False
        )
        reference = F.conv2d(upsampled, decoder.head.weight, decoder.head.bias)
    assert torch.allclose(logits, reference, atol=1e-5)


def test_auto_tries_the_download_once_per_process(empty_hub, monkeypatch):
    attempts = []

    def counting_download():
        attempts.append(1)
        raise OSError("offline")

    monkeypatch.setattr(backbone_module, "download_imagenet_state_dict", counting_download)
    for _ in range(3):
        with pytest.warns(UserWarning, match="RANDOM initialisation"):
            assert backbone_module.load_imagenet_state_dict("auto") is None
    assert len(attempts) == 1
    with pytest.raises(RuntimeError):  # an explicit request always tries again
        backbone_module.load_imagenet_state_dict("imagenet")
    assert len(attempts) == 2


def test_failed_download_is_quiet_and_recorded(empty_hub, monkeypatch, capfd):
    # the real torch.hub code path (it prints "Downloading: ..." before connecting), offline
    def offline_urlopen(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(backbone_module, "download_imagenet_state_dict", REAL_DOWNLOAD)
    monkeypatch.setattr(torch.hub, "urlopen", offline_urlopen)
    with pytest.warns(UserWarning, match="RANDOM initialisation"):
        assert backbone_module.load_imagenet_state_dict("auto") is None
    printed = capfd.readouterr()
    assert "Downloading" not in printed.out + printed.err
    note = common_module.describe_initialisation(False)
    assert note.startswith("random") and "Name or service not known" in note
    assert common_module.describe_initialisation(True) == "imagenet"
    assert common_module.describe_initialisation(None) == "no pretrained part"
    monkeypatch.setattr(common_module, "_FAILED", {})
    assert common_module.describe_initialisation(False) == "random (weights='none')"
