"""The BGNet model: variant flags, shapes, subtraction paths, gradients and a learning check."""

import dataclasses
import json

import pytest
import torch
import torchvision
from method_checks import synthetic_pairs

from bgnet_lite.losses import focal_loss, matching_loss
from bgnet_lite.methods import create_model, method_name
from bgnet_lite.methods.bgnet.config import LOFTR_WIDTHS, VARIANTS, BGNetConfig, Deviations
from bgnet_lite.methods.bgnet.model import BGNet
from bgnet_lite.metrics import parameter_size_mb
from bgnet_lite.paper_results import PAPER_PARAMS_MB

FLAGS = {  # Table 1 of the paper: (siamese, attention, matching)
    "S1": (False, False, False),
    "S2": (True, False, False),
    "S3": (True, True, False),
    "S4": (True, False, True),
    "S5": (True, True, True),
}


def make_model(variant, num_classes=1, in_channels=3, **options):
    """A BGNet variant through the registry; options are flat (deviations included)."""
    torch.manual_seed(0)
    options.setdefault("weights", "none")
    return create_model(method_name(variant), num_classes, in_channels, **options)


def random_pair(channels=3, size=64, batch=2, seed=1):
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, channels, size, size)
    return torch.rand(shape, generator=generator), torch.rand(shape, generator=generator)


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_flags_follow_table_1(variant):
    config = BGNetConfig(variant=variant)
    assert (config.siamese, config.attention, config.matching) == FLAGS[variant]
    assert config.attention_scales == (8, 32)
    assert (config.depth_8, config.depth_32, config.nhead) == (1, 2, 8)
    assert config.deviations == Deviations()  # every deviation off: the paper
    assert make_model(variant).config == dataclasses.replace(config, weights="none")


def test_config_round_trip_and_refusals():
    config = BGNetConfig(variant="S5", depth_32=1, deviations=Deviations(local_match_px=6.0))
    as_json = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples become lists
    assert BGNetConfig(**as_json) == config
    with pytest.raises(ValueError, match="variant"):
        BGNetConfig(variant="S6")
    with pytest.raises(ValueError, match="attention_scales"):
        BGNetConfig(attention_scales=(16,))
    with pytest.raises(ValueError, match="align_fine_scales needs matching"):
        BGNetConfig(variant="S3", deviations=Deviations(align_fine_scales=True))
    with pytest.raises(ValueError, match="local_match_px needs a Siamese"):
        BGNetConfig(variant="S1", deviations=Deviations(local_match_px=4.0))
    with pytest.raises(ValueError, match="in_channels"):
        BGNetConfig(in_channels=4)
    with pytest.raises(ValueError, match="no option nonsense"):
        make_model("S5", nonsense=1)


def conv_block_params(inputs, outputs):
    """Two 3x3 convs without bias, each followed by BatchNorm (weight and bias)."""
    return 9 * inputs * outputs + 9 * outputs * outputs + 4 * outputs


def encoder_layer_params(d_model, qkv, mlp):
    """Q, K, V, merge (no bias), MLP on [x, message] (no bias), two LayerNorms."""
    return 3 * d_model * qkv + qkv * d_model + 2 * d_model * mlp + mlp * d_model + 4 * d_model


def test_default_s5_has_the_papers_size():
    resnet = torchvision.models.resnet18(weights=None)
    backbone = sum(p.numel() for p in resnet.parameters()) - 512 * 1000 - 1000  # no fc
    # decoder (64, 32, 16, 16) over the skips 256, 128, 64, 64 from the 512-channel map
    decoder = (conv_block_params(512 + 256, 64) + conv_block_params(64 + 128, 32)
               + conv_block_params(32 + 64, 16) + conv_block_params(16 + 64, 16) + 16 + 1)
    # one self/cross pair at 1/8 (128 ch) and two at 1/32 (512 ch), Q/K/V 32, MLP 64
    attention = 2 * encoder_layer_params(128, 32, 64) + 4 * encoder_layer_params(512, 32, 64)
    expected = (backbone + decoder + attention) * 4 / 2**20
    s5 = make_model("S5")
    assert parameter_size_mb(s5) == pytest.approx(expected, rel=1e-12)
    assert abs(expected / PAPER_PARAMS_MB - 1) < 0.05  # within 5 % of Table 3's 47.70 MB
    assert parameter_size_mb(make_model("S2")) == pytest.approx(
        (backbone + decoder) * 4 / 2**20, rel=1e-12)
    loftr = make_model("S5", **LOFTR_WIDTHS)
    loftr_attention = (2 * encoder_layer_params(128, 128, 256)
                       + 4 * encoder_layer_params(512, 512, 1024))
    loftr_decoder = (conv_block_params(768, 256) + conv_block_params(384, 128)
                     + conv_block_params(192, 64) + conv_block_params(128, 64) + 64 + 1)
    assert parameter_size_mb(loftr) == pytest.approx(
        (backbone + loftr_decoder + loftr_attention) * 4 / 2**20, rel=1e-12)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("channels,num_classes", [(1, 1), (3, 7), (1, 7), (3, 1)])
def test_forward_shapes(variant, channels, num_classes):
    model = make_model(variant, in_channels=channels, num_classes=num_classes)
    template, sample = random_pair(channels)
    with torch.no_grad():
        logits = model(template, sample)
        output = model.forward_details(template, sample)
    assert logits.shape == (2, num_classes, 64, 64)
    assert torch.equal(output["logits"], logits)
    assert torch.isfinite(output["logits"]).all()
    assert len(output["diff_feats"]) == 5
    assert ("matches" in output) == FLAGS[variant][2]


def test_non_square_odd_image_size():
    model = make_model("S5").eval()
    template, sample = torch.rand(1, 3, 70, 100), torch.rand(1, 3, 70, 100)
    with torch.no_grad():
        assert model(template, sample).shape == (1, 1, 70, 100)


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
    focal_loss(model(template, sample), target).backward()
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
        output = model.forward_details(template, sample)
        template_feats = model.backbone(template)
        sample_feats = model.backbone(sample)
    for diff, t, s in zip(output["diff_feats"], template_feats, sample_feats, strict=True):
        assert torch.allclose(diff, s - t, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("theta", [0.0, 0.2])
def test_s4_matched_subtraction_against_naive_loop(theta):
    model = make_model("S4", theta=theta).eval()
    template, sample = random_pair(batch=1)
    with torch.no_grad():
        output = model.forward_details(template, sample)
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
        plain = model.forward_details(template, sample)
        asked = model.forward_details(template, sample, need_match_prob=True)
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
    output = model.forward_details(template, sample, need_match_prob=True)
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
        dense_out = dense.forward_details(template, sample)
        chunked_out = chunked.forward_details(template, sample)
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
        output = model.forward_details(template, sample)
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
    result = model.matching_only(template, sample)
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


def train_losses(steps):
    """Adam (lr 1e-3) on two synthetic pairs; returns the model, last logits and the losses."""
    torch.manual_seed(0)
    model = BGNet(BGNetConfig(variant="S5", in_channels=1, weights="none")).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    template, sample, mask = synthetic_pairs(count=2)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        logits = model(template, sample)
        loss = focal_loss(logits, mask)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return logits.detach(), mask, losses


def test_s5_learns_synthetic_defects_deterministically():
    # 30 steps: the paper-size decoder (a quarter of U-Net's widths) learns more slowly per
    # step than the full-width one did in 12
    logits, mask, losses = train_losses(30)
    assert losses[-1] < 0.3 * losses[0], losses
    # not only "predict background everywhere": the defect square stands out
    prob = torch.sigmoid(logits[:, 0])
    assert prob[mask == 1].mean() > prob[mask == 0].mean() + 0.3
    _, _, repeated = train_losses(3)
    assert repeated == losses[:3]  # same seed, same data -> identical losses


def test_describe_variant_names_runs_by_what_they_are():
    from bgnet_lite.methods.bgnet import describe_variant

    local = {"match_loss": 0.1, "align_fine_scales": True, "local_match_px": 6.0}
    assert describe_variant("S5", local) == (
        "S5 + matching loss 0.1 + aligned fine scales + local matching 6 px")
    assert describe_variant("S2", {"steps": 1800, "lr": 1e-3, "lr_schedule": "cosine"}, 1.0,
                            defaults={"steps": 150, "lr": 1e-3}) == (
        "variation 1: S2 (1800 steps, cosine decay)")
    assert describe_variant("S2", {"focal_alpha": 0.0}) == "S2 (the paper's loss (no α))"
