"""Training engine and CLI: checkpoints, resume, evaluation JSON, prediction (tiny, on CPU)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from bgnet_lite.cli import build_parser
from bgnet_lite.cli import main as cli_main
from bgnet_lite.data.synth import SynthConfig, write_synth_dataset
from bgnet_lite.engine import (
    TrainConfig,
    defect_iou_by_type,
    learning_rate,
    load_checkpoint,
    train,
)
from bgnet_lite.model.bgnet import BGNetConfig


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "ocd"
    write_synth_dataset(out, SynthConfig(pairs=24, size=64, seed=3, batches=6), progress=False)
    return out


def _config(data, out, **overrides):
    base = dict(data=str(data), out=str(out), variant="S5", profile="quick", steps=2,
                batch_size=2, eval_every=2, val_pairs=2, weights="none", seed=0)
    base.update(overrides)
    return TrainConfig(**base)


def test_train_writes_run_and_is_deterministic(tiny_data, tmp_path):
    first = train(_config(tiny_data, tmp_path / "a"), progress=False)
    train(_config(tiny_data, tmp_path / "b"), progress=False)
    assert first["steps"] == 2
    history_a = json.loads((tmp_path / "a" / "history.json").read_text())
    history_b = json.loads((tmp_path / "b" / "history.json").read_text())
    assert [h["loss"] for h in history_a["train"]] == [h["loss"] for h in history_b["train"]]
    info = json.loads((tmp_path / "a" / "run.json").read_text())
    assert {"commit", "device", "profile"} <= set(info["provenance"])
    assert info["train_config"]["seed"] == 0 and info["wall_time_s"] > 0
    state = load_checkpoint(tmp_path / "a" / "best.pt")  # weights_only=True inside
    assert all(isinstance(v, torch.Tensor) for v in state["model"].values())


def test_resume_continues_from_last_checkpoint(tiny_data, tmp_path):
    train(_config(tiny_data, tmp_path / "r", steps=2), progress=False)
    resumed = train(_config(tiny_data, tmp_path / "r", steps=4, resume=True), progress=False)
    straight = train(_config(tiny_data, tmp_path / "s", steps=4), progress=False)
    assert resumed["steps"] == 4
    history = json.loads((tmp_path / "r" / "history.json").read_text())
    assert [h["step"] for h in history["train"]] == [1, 2, 3, 4]
    assert straight["steps"] == 4


def test_match_loss_and_soft_match_train(tiny_data, tmp_path):
    result = train(_config(tiny_data, tmp_path / "m", match_loss=1.0), progress=False)
    history = json.loads((tmp_path / "m" / "history.json").read_text())
    assert all(h["match"] > 0 for h in history["train"])  # ground-truth flows were used
    assert result["steps"] == 2
    train(_config(tiny_data, tmp_path / "soft", soft_match=True), progress=False)
    aligned = train(_config(tiny_data, tmp_path / "align", match_loss=1.0,
                            align_fine_scales=True, attention_dim=32), progress=False)
    assert aligned["steps"] == 2
    local = train(_config(tiny_data, tmp_path / "local", match_loss=0.1, align_fine_scales=True,
                          local_match_px=6.0, lr_schedule="cosine"), progress=False)
    assert local["steps"] == 2


def test_cli_options_reach_the_model_config(tmp_path):
    args = build_parser().parse_args(
        ["train", "DATA", "--out", str(tmp_path), "--variant", "S4", "--align-fine-scales",
         "--attention-dim", "64", "--soft-match", "--theta", "0.3", "--temperature", "0.05",
         "--local-match-px", "6", "--lr-schedule", "cosine"])
    train_config = TrainConfig.from_args(args)
    assert train_config.lr_schedule == "cosine"
    model_config = train_config.model_config(num_classes=2)
    assert model_config.local_match_px == 6.0
    assert model_config.variant == "S4" and model_config.num_classes == 1
    assert model_config.align_fine_scales and model_config.soft_match
    assert model_config.attention_dim == 64
    assert (model_config.theta, model_config.temperature) == (0.3, 0.05)
    default = TrainConfig.from_args(build_parser().parse_args(
        ["train", "DATA", "--out", str(tmp_path)])).model_config(num_classes=2)
    assert not default.align_fine_scales and default.attention_dim is None
    assert default.local_match_px == 0.0
    assert (default.theta, default.temperature) == (0.2, 0.1)


def test_cli_evaluate_and_predict(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_main(["train", str(tiny_data), "--variant", "S2", "--out", str(run), "--profile",
                     "quick", "--steps", "2", "--weights", "none"]) == 0
    json_path = tmp_path / "metrics.json"
    assert cli_main(["evaluate", str(run), str(tiny_data), "--split", "test", "--json",
                     str(json_path)]) == 0
    metrics = json.loads(json_path.read_text())
    for key in ("precision", "recall", "f2", "miou", "macc", "params_mb", "split", "profile",
                "seed"):
        assert key in metrics
    assert metrics["split"] == "test" and metrics["profile"] == "quick"
    pairs = tmp_path / "pairs"
    for sub in ("template", "sample"):
        (pairs / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(
        pairs / "template" / "golden.png")
    for name in ("p1", "p2"):
        Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(
            pairs / "sample" / f"{name}.png")
    out = tmp_path / "pred"
    assert cli_main(["predict", str(run), str(pairs), str(out)]) == 0
    for name in ("p1", "p2"):
        mask = np.array(Image.open(out / "mask" / f"{name}.png"))
        assert mask.shape == (80, 96)  # back at the sample's own size
        assert set(np.unique(mask)) <= {0, 255}
        assert (out / "overlay" / f"{name}.png").is_file()


def test_cli_train_help_is_readable(capsys):
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    text = capsys.readouterr().out
    assert "S1 concatenation baseline" in text and "--match-loss" in text


def test_focal_alpha_comes_from_the_profile_and_zero_means_off(tmp_path):
    assert _config("d", tmp_path).focal_alpha == 0.9  # quick profile
    assert _config("d", tmp_path, profile="full").focal_alpha == 0.0  # the paper
    assert _config("d", tmp_path, focal_alpha=0.0).focal_alpha == 0.0
    with pytest.raises(ValueError, match="focal_alpha"):
        _config("d", tmp_path, focal_alpha=1.5)


@pytest.mark.parametrize("alpha", [0.0, 0.9])
def test_compute_loss_applies_focal_alpha(tiny_data, alpha):
    from torchvision.ops import sigmoid_focal_loss

    from bgnet_lite.data.folder import PairDataset, collate_pairs
    from bgnet_lite.engine import compute_loss
    from bgnet_lite.model.bgnet import BGNet, BGNetConfig

    torch.manual_seed(0)
    model = BGNet(BGNetConfig.from_variant("S2", weights="none")).eval()
    batch = collate_pairs([PairDataset(tiny_data, "train", size=64)[i] for i in range(2)])
    _, seg_loss, _, outputs = compute_loss(model, batch, 0.0, 2, alpha)
    reference = sigmoid_focal_loss(outputs["logits"][:, 0], batch["mask"].float(),
                                   alpha=alpha or -1, gamma=2.0, reduction="mean")
    torch.testing.assert_close(seg_loss, reference.detach())


def test_learning_rate_schedules_against_hand_values():
    assert learning_rate(1e-3, "constant", 7, 10) == 1e-3
    # cos(0) = 1, cos(pi / 2) = 0, cos(pi) = -1
    assert learning_rate(1e-3, "cosine", 0, 100) == pytest.approx(1e-3)
    assert learning_rate(1e-3, "cosine", 50, 100) == pytest.approx(5e-4)
    assert learning_rate(1e-3, "cosine", 100, 100) == pytest.approx(0.0, abs=1e-15)
    assert learning_rate(2.0, "cosine", 25, 100) == pytest.approx(1 + math.sqrt(0.5))
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(data="d", out="o", lr_schedule="step")


def test_cosine_schedule_reaches_the_optimizer(tiny_data, tmp_path, monkeypatch):
    seen = []
    original_step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    train(_config(tiny_data, tmp_path / "cos", lr=1e-3, lr_schedule="cosine", steps=4),
          progress=False)
    expected = [1e-3 * 0.5 * (1 + math.cos(math.pi * step / 4)) for step in range(4)]
    assert seen == pytest.approx(expected)


class _BrightIsDefect(torch.nn.Module):
    """A stand-in model: defect wherever the sample's first channel exceeds 0.5."""

    config = BGNetConfig(variant="S2")  # binary: one logit

    def forward(self, template, sample):
        return {"logits": (sample[:, :1] - 0.5) * 20}


def _pair(kind, sample_rows, mask_rows):
    sample = torch.zeros(3, 4, 4)
    sample[0, sample_rows] = 1.0
    mask = torch.zeros(4, 4, dtype=torch.long)
    mask[mask_rows] = 1
    return {"template": torch.zeros(3, 4, 4), "sample": sample, "mask": mask,
            "meta": {"defect": kind} if kind else {}}


def test_defect_iou_by_type_against_hand_counts():
    pairs = [_pair("scratch", slice(0, 1), slice(0, 2)),  # 4 of 8 true pixels found
             _pair("scratch", slice(0, 2), slice(0, 1)),  # 4 true pixels, 4 false alarms
             _pair("stain", slice(3, 4), slice(3, 4)),  # exact
             _pair(None, slice(0, 0), slice(1, 2))]  # no defect column, nothing found
    batches = [{"template": torch.stack([p["template"] for p in chunk]),
                "sample": torch.stack([p["sample"] for p in chunk]),
                "mask": torch.stack([p["mask"] for p in chunk]),
                "meta": [p["meta"] for p in chunk]} for chunk in (pairs[:3], pairs[3:])]
    model = _BrightIsDefect().train()
    result = defect_iou_by_type(model, batches)
    assert model.training  # restored
    assert list(result) == ["scratch", "stain", "unlabelled"]
    # scratch: intersection 4 + 4, union 8 + 8 over its two pairs; 12 true pixels in 2 pairs
    assert result["scratch"] == {"pairs": 2, "truth_px_per_pair": 6.0, "defect_iou": 0.5}
    assert result["stain"]["defect_iou"] == 1.0
    assert result["unlabelled"]["defect_iou"] == 0.0
