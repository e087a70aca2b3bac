"""The BGNet model: variant flags, shapes, subtraction paths, gradients and a learning check."""

import dataclasses
import json

import pytest
import torch

from bgnet_lite.loss import focal_loss, matching_loss
from bgnet_lite.model.bgnet import VARIANTS, BGNet, BGNetConfig, parameter_size_mb

FLAGS = {  # Table 1 of the paper: (siamese, attention, matching)
    "S1": (False, False, False),
    "S2": (True, False, False),
    "S3": (True, True, False),
    "S4": (True, False, True),
    "S5": (True, True, True),
}


def make_model(variant, **overrides):
    torch.manual_seed(0)
    overrides.setdefault("weights", "none")
    return BGNet(BGNetConfig.from_variant(variant, **overrides))


def random_pair(channels=3, size=64, batch=2, seed=1):
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, channels, size, size)
    return torch.rand(shape, generator=generator), torch.rand(shape, generator=generator)


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_flags_follow_table_1(variant):
    config = BGNetConfig.from_variant(variant)
    assert (config.siamese, config.attention, config.matching) == FLAGS[variant]
    assert BGNetConfig(variant=variant) == config  # the variant alone sets the flags
    assert config.attention_scales == (8, 32)
    assert (config.depth_8, config.depth_32, config.nhead) == (1, 2, 8)


def test_config_overrides_and_refusals():
    assert BGNetConfig.from_variant("S5", matching=False).attention is True
    assert BGNetConfig.from_variant("S5", matching=False).matching is False
    config = BGNetConfig.from_variant("S3", depth_32=1)
    as_json = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples become lists
    assert BGNetConfig(**as_json) == config
    with pytest.raises(ValueError, match="variant"):
        BGNetConfig.from_variant("S6")
    with pytest.raises(ValueError, match="attention_scales"):
        BGNetConfig(attention_scales=(16,))
    with pytest.raises(ValueError, match="siamese"):
        BGNetConfig(variant="S1", matching=True)
    with pytest.raises(ValueError, match="in_channels"):
        BGNetConfig(in_channels=4)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("channels,num_classes", [(1, 1), (3, 7), (1, 7), (3, 1)])
def test_forward_shapes(variant, channels, num_classes):
    model = make_model(variant, in_channels=channels, num_classes=num_classes)
    template, sample = random_pair(channels)
    with torch.no_grad():
        output = model(template, sample)
    assert output["logits"].shape == (2, num_classes, 64, 64)
    assert torch.isfinite(output["logits"]).all()
    assert len(output["diff_feats"]) == 5
    assert ("matches" in output) == FLAGS[variant][2]


def test_non_square_odd_image_size():
    model = make_model("S5").eval()
    template, sample = torch.rand(1, 3, 70, 100), torch.rand(1, 3, 70, 100)
    with torch.no_grad():
        assert model(template, sample)["logits"].shape == (1, 1, 70, 100)


def test_s1_encoder_takes_six_channels_and_s2_has_no_attention():
    s1 = make_model("S1")
    assert s1.backbone.stem[0].in_channels == 6
    s2 = make_model("S2")
    names = [name for name, _ in s2.named_parameters()]
    assert not any("attention" in name or "position" in name for name in names)
    backbone_decoder = sum(p.numel() for p in s2.backbone.parameters()) + sum(
        p.numel() for p in s2.decoder.parameters()
    )
    assert sum(p.numel() for p in s2.parameters()) == backbone_decoder
    s5 = make_model("S5")
    assert any(name.startswith("attention.8.") for name, _ in s5.named_parameters())
    assert any(name.startswith("attention.32.") for name, _ in s5.named_parameters())


def test_parameter_size_is_float32_mib():
    assert parameter_size_mb(torch.nn.Linear(10, 5)) == pytest.approx(55 * 4 / 2**20)


@pytest.mark.parametrize("variant", ["S3", "S5"])
def test_attention_parameters_receive_gradients(variant):
    model = make_model(variant).train()
    template, sample = random_pair()
    target = torch.zeros(2, 64, 64)
    target[:, 20:30, 20:30] = 1
    focal_loss(model(template, sample)["logits"], target).backward()
    # S3 subtracts template from sample at the same cell, so a bias that the last LayerNorm
    # adds to both cancels exactly and gets no gradient; weight matrices must all get one
    attention_parameters = [
        (name, parameter) for name, parameter in model.named_parameters()
        if name.startswith("attention.") and (variant == "S5" or parameter.dim() > 1)
    ]
    assert attention_parameters
    for name, parameter in attention_parameters:
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_s2_subtracts_separately_computed_backbone_features():
    model = make_model("S2").eval()
    template, sample = random_pair()
    with torch.no_grad():
        output = model(template, sample)
        template_feats = model.backbone(template)
        sample_feats = model.backbone(sample)
    for diff, t, s in zip(output["diff_feats"], template_feats, sample_feats, strict=True):
        assert torch.allclose(diff, s - t, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("theta", [0.0, 0.2])
def test_s4_matched_subtraction_against_naive_loop(theta):
    model = make_model("S4", theta=theta).eval()
    template, sample = random_pair(batch=1)
    with torch.no_grad():
        output = model(template, sample)
        template_feats = model.backbone(template)
        sample_feats = model.backbone(sample)
    for level, stride in ((2, 8), (4, 32)):
        mapping = output["matches"][stride].sample_to_template[0]  # [S]
        t_map, s_map = template_feats[level][0], sample_feats[level][0]  # [C, H, W]
        width = s_map.shape[-1]
        expected = s_map.clone()
        for b in range(mapping.numel()):
            a = int(mapping[b])
            if a >= 0:
                expected[:, b // width, b % width] -= t_map[:, a // width, a % width]
        assert torch.allclose(output["diff_feats"][level][0], expected, atol=1e-4, rtol=1e-4)
    # the other scales are plain subtractions
    for level in (0, 1, 3):
        direct = sample_feats[level] - template_feats[level]
        assert torch.allclose(output["diff_feats"][level], direct, atol=1e-4, rtol=1e-4)
    if theta == 0.0:  # MNN always has at least one pair: the global maximum of P
        assert (output["matches"][8].sample_to_template >= 0).any()


def test_match_prob_only_when_asked():
    model = make_model("S5").eval()
    template, sample = random_pair()
    with torch.no_grad():
        plain = model(template, sample)
        asked = model(template, sample, need_match_prob=True)
    assert "match_prob" not in plain
    assert all(result.match_prob is None for result in plain["matches"].values())
    assert asked["match_prob"][8].shape == (2, 64, 64)  # [N, L, S] at 8 x 8 cells
    assert asked["match_prob"][32].shape == (2, 4, 4)  # 2 x 2 cells
    for prob in asked["match_prob"].values():
        assert ((prob >= 0) & (prob <= 1)).all()
    assert torch.equal(plain["logits"], asked["logits"])


def test_matching_loss_trains_the_attention_through_match_prob():
    model = make_model("S5").train()
    template, sample = random_pair()
    output = model(template, sample, need_match_prob=True)
    identity = torch.arange(64).expand(2, 64)  # ground truth: sample cell b <-> template cell b
    matching_loss(output["match_prob"][8], identity).backward()
    assert model.attention["8"].cross_layers[0].q_proj.weight.grad.abs().sum() > 0
    assert model.attention["32"].self_layers[0].q_proj.weight.grad is None  # other scale


def test_chunked_matching_gives_the_same_prediction():
    dense = make_model("S5").eval()
    chunked = make_model("S5", chunked_matching=True, chunk_size=7).eval()
    chunked.load_state_dict(dense.state_dict())
    template, sample = random_pair()
    with torch.no_grad():
        dense_out, chunked_out = dense(template, sample), chunked(template, sample)
    for stride in (8, 32):
        assert torch.equal(
            dense_out["matches"][stride].sample_to_template,
            chunked_out["matches"][stride].sample_to_template,
        )
    assert torch.allclose(dense_out["logits"], chunked_out["logits"], atol=1e-4, rtol=1e-4)


def test_soft_match_is_differentiable_through_the_probabilities():
    # eval mode: BatchNorm does not couple the images, so at 1/8 the template can influence
    # the difference map only through the matching
    template, sample = random_pair()
    for soft_match in (False, True):
        model = make_model("S4", soft_match=soft_match, theta=1.0).eval()
        template.grad = None
        template.requires_grad_(True)
        output = model(template, sample)
        assert "match_prob" not in output  # computed for soft match, returned only if asked
        output["diff_feats"][2].sum().backward()
        if soft_match:
            assert template.grad.abs().sum() > 0
        else:  # theta = 1: no hard match, the 1/8 map is the sample's own features
            assert (output["matches"][8].sample_to_template == -1).all()
            assert template.grad is None or template.grad.abs().sum() == 0


def test_matching_only_for_widgets():
    model = make_model("S2").eval()  # works even for variants that do not subtract by matches
    template, sample = random_pair(batch=1)
    result = model.matching_only(template, sample, theta=0.0)
    assert result["template_feats"][8].shape == (1, 128, 8, 8)
    assert result["sample_feats"][32].shape == (1, 512, 2, 2)
    assert result["matches"][8].match_prob.shape == (1, 64, 64)
    with pytest.raises(ValueError, match="S1"):
        make_model("S1").matching_only(template, sample)


def test_bad_inputs_are_refused():
    model = make_model("S2")
    with pytest.raises(ValueError, match="config.in_channels=3"):
        model(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="same shape"):
        model(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 96))
    with pytest.raises(ValueError, match="at least 32"):
        model(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))


def synthetic_pairs(count=4, size=64, seed=0):
    """Textured templates; sample = template shifted by a few pixels + a bright square."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 1, size // 8, size // 8, generator=generator)
    template = torch.nn.functional.interpolate(coarse, size=(size, size), mode="nearest")
    template = (0.6 * template + 0.2 * torch.rand(count, 1, size, size, generator=generator))
    sample = torch.empty_like(template)
    mask = torch.zeros(count, size, size)
    for index in range(count):
        shift = [int(v) for v in torch.randint(-3, 4, (2,), generator=generator)]
        sample[index] = torch.roll(template[index], shifts=shift, dims=(1, 2))
        y, x = (int(v) for v in torch.randint(8, size - 20, (2,), generator=generator))
        sample[index, :, y:y + 10, x:x + 10] = 1.0
        mask[index, y:y + 10, x:x + 10] = 1.0
    return template, sample, mask


def train_losses(steps):
    """Adam (lr 1e-3) on two synthetic pairs; returns the model, last logits and the losses."""
    torch.manual_seed(0)
    model = BGNet(BGNetConfig.from_variant("S5", in_channels=1, weights="none")).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    template, sample, mask = synthetic_pairs(count=2)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        logits = model(template, sample)["logits"]
        loss = focal_loss(logits, mask)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return logits.detach(), mask, losses


def test_s5_learns_synthetic_defects_deterministically():
    logits, mask, losses = train_losses(12)
    assert losses[-1] < 0.25 * losses[0], losses
    # not only "predict background everywhere": the defect square stands out
    prob = torch.sigmoid(logits[:, 0])
    assert prob[mask == 1].mean() > prob[mask == 0].mean() + 0.3
    _, _, repeated = train_losses(3)
    assert repeated == losses[:3]  # same seed, same data -> identical losses
