"""The method registry: one contract, created by name; a new method needs no engine change."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

from bgnet_lite.cli import main as cli_main
from bgnet_lite.data.synth import SynthConfig, write_synth_dataset
from bgnet_lite.methods import (
    create_model,
    get_method,
    method_names,
    register_method,
    unregister_method,
)
from bgnet_lite.paper_results import PAPER_TABLE3


@dataclass
class ToyOptions:
    """A method from outside the package: options as a dataclass, like every method's."""

    num_classes: int = 1
    in_channels: int = 3
    width: int = 8


class ToyConv(torch.nn.Module):
    """Template and sample stacked on channels (6 for RGB), two 3x3 convolutions."""

    def __init__(self, options: ToyOptions):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Conv2d(2 * options.in_channels, options.width, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(options.width, options.num_classes, 3, padding=1),
        )

    def forward(self, template, sample):
        return self.layers(torch.cat([template, sample], dim=1))


@pytest.fixture
def toy_method():
    register_method("toy-conv6", family="Classical", citation="a test", summary="6-channel conv",
                    options=ToyOptions)(ToyConv)
    yield "toy-conv6"
    unregister_method("toy-conv6")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "ocd"
    write_synth_dataset(out, SynthConfig(pairs=24, size=64, seed=3, batches=6), progress=False)
    return out


def test_every_bgnet_variant_is_registered_with_the_papers_numbers():
    variants = [name for name in method_names() if name.startswith("bgnet-")]
    assert variants == ["bgnet-s1", "bgnet-s2", "bgnet-s3", "bgnet-s4", "bgnet-s5"]
    s5 = get_method("bgnet-s5")
    assert s5.family == "Ours" and s5.paper_params_mb == PAPER_TABLE3["BGNet"][2] == 47.70
    assert get_method("bgnet-s2").paper_params_mb is None  # Table 3 has no S2
    template, sample = torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)
    for name in variants:
        model = create_model(name, num_classes=4, in_channels=1, weights="none").eval()
        with torch.no_grad():
            assert model(template, sample).shape == (2, 4, 64, 64)  # the one contract


def test_bad_names_and_options_are_refused():
    with pytest.raises(ValueError, match="unknown method 'u-net'.*unet.*bgnet-s5"):
        create_model("u-net")
    with pytest.raises(ValueError, match="no option variant"):  # pinned by the entry
        create_model("bgnet-s5", variant="S2")
    with pytest.raises(ValueError, match="num_classes"):
        create_model("bgnet-s5", num_classes=0)
    with pytest.raises(ValueError, match="family"):
        register_method("x", family="Other", citation="", summary="", options=ToyOptions)


def test_a_method_from_outside_trains_evaluates_and_predicts_through_the_cli(
        toy_method, tiny_data, tmp_path, capsys):
    assert create_model(toy_method, num_classes=1, in_channels=3, width=4)(
        torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    run = tmp_path / "run"
    assert cli_main(["train", str(tiny_data), "--method", toy_method, "--width", "4",
                     "--out", str(run), "--profile", "quick", "--steps", "3"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["train_config"]["method"] == toy_method
    assert info["train_config"]["options"] == {"width": 4}
    assert info["steps"] == 3 and info["params_mb"] == pytest.approx(
        ((6 * 4 * 9 + 4) + (4 * 1 * 9 + 1)) * 4 / 2**20)
    json_path = tmp_path / "metrics.json"
    assert cli_main(["evaluate", str(run), str(tiny_data), "--json", str(json_path)]) == 0
    metrics = json.loads(json_path.read_text())
    assert metrics["method"] == toy_method and 0 <= metrics["miou"] <= 1
    pairs = tmp_path / "pairs"
    for sub in ("template", "sample"):
        (pairs / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for sub in ("template", "sample"):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
            pairs / sub / "p1.png")
    assert cli_main(["predict", str(run), str(pairs), str(tmp_path / "pred")]) == 0
    assert np.array(Image.open(tmp_path / "pred" / "mask" / "p1.png")).shape == (40, 48)
    capsys.readouterr()
    assert cli_main(["methods", toy_method]) == 0
    assert "--width" in capsys.readouterr().out


@dataclass
class DifferenceOptions:
    num_classes: int = 1
    in_channels: int = 3
    threshold: float = 0.5


class AbsoluteDifference(torch.nn.Module):
    """Not a network: defect where |sample - template| exceeds a threshold (no parameter)."""

    def __init__(self, options: DifferenceOptions):
        super().__init__()
        self.threshold = options.threshold

    def forward(self, template, sample):
        difference = (sample - template).abs().amax(dim=1, keepdim=True)  # [N, 1, H, W]
        return (difference - self.threshold) * 50


def test_a_method_without_parameters_is_evaluated_without_training(tiny_data, tmp_path):
    register_method("abs-diff", family="Classical", citation="a test", summary="no parameter",
                    options=DifferenceOptions)(AbsoluteDifference)
    try:
        run = tmp_path / "diff"
        assert cli_main(["train", str(tiny_data), "--method", "abs-diff", "--threshold", "0.3",
                         "--out", str(run), "--profile", "quick"]) == 0
        info = json.loads((run / "run.json").read_text())
        assert info["steps"] == 0 and info["params_mb"] == 0.0
        json_path = tmp_path / "m.json"
        assert cli_main(["evaluate", str(run), str(tiny_data), "--json", str(json_path)]) == 0
        # the same metrics as thresholding the test pairs by hand
        from bgnet_lite.data.folder import PairDataset
        from bgnet_lite.metrics import ConfusionMatrix

        confusion = ConfusionMatrix(1)
        for item in PairDataset(tiny_data, "test", size=info["train_config"]["size"]):
            found = (item["sample"] - item["template"]).abs().amax(dim=0) > 0.3
            confusion.update(found.long()[None], item["mask"][None])
        expected = confusion.compute()["miou"]
        assert json.loads(json_path.read_text())["miou"] == pytest.approx(expected)
    finally:
        unregister_method("abs-diff")
