"""The classical AOI baseline (registration + differencing, no learning; chapter 9).

Each check compares with something computed independently: a known cv2.warpAffine transform,
a pasted square, a brute-force loop over the calibration grid scored by the engine's own
evaluation, a state_dict copy, and the real CLI.
"""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bgnet_lite.cli import main as cli_main
from bgnet_lite.data.folder import PairDataset, collate_pairs
from bgnet_lite.data.synth import SynthConfig, render_template, write_synth_dataset
from bgnet_lite.methods import create_model, get_method
from bgnet_lite.methods.registration.homography import plausible, register_pair, to_grey_uint8
from bgnet_lite.train.evaluate import evaluate

SIZE = 128


def textured_template(size: int = SIZE) -> np.ndarray:
    """A synthetic board, uint8 [S, S, 3]."""
    return render_template(SynthConfig(size=size, batches=3, seed=1), 0)


def known_motion(size: int = SIZE, angle_deg: float = 3.0, shift=(2.5, -1.75)) -> np.ndarray:
    """A 2x3 affine map template -> sample: a rotation about the centre plus a shift."""
    affine = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), angle_deg, 1.0)
    affine[:, 2] += shift
    return affine


def shifted_pair(affine: np.ndarray, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    template = textured_template(size)
    sample = cv2.warpAffine(template, affine, (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
    return template, sample


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255  # [1, 3, H, W]


# keypoints are coarse on small images: RANSAC alone is sub-pixel from 256 px on, ECC
# refines it to a fraction of a pixel even at 128 px
@pytest.mark.parametrize(("detector", "ecc", "size", "tolerance_px"), [
    ("sift", True, 128, 0.25), ("orb", True, 128, 0.25), ("sift", False, 256, 1.0)])
def test_registration_recovers_a_known_rotation_and_shift(detector, ecc, size, tolerance_px):
    affine = known_motion(size)
    template, sample = shifted_pair(affine, size)
    registration = register_pair(to_grey_uint8(template / 255.0), to_grey_uint8(sample / 255.0),
                                 detector, ecc=ecc)
    assert registration.status == ("ransac+ecc" if ecc else "ransac")
    ys, xs = np.mgrid[8:size - 8:8, 8:size - 8:8]
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])  # [3, P]
    mapped = registration.homography @ points
    mapped = mapped[:2] / mapped[2]
    error = np.linalg.norm(mapped - affine @ points, axis=0).mean()
    assert error < tolerance_px  # mean grid-point displacement


def test_only_near_rigid_homographies_are_plausible():
    turned = np.vstack([known_motion(angle_deg=20.0, shift=(30.0, -12.0)), [0, 0, 1]])
    assert plausible(turned, SIZE)  # any rotation and shift is a rigid motion
    assert not plausible(np.diag([1.3, 1.0, 1.0]), SIZE)  # 30 % stretch
    tilted = np.eye(3)
    tilted[2, 0] = 0.4 / SIZE  # the perspective denominator changes by 40 % across the image
    assert not plausible(tilted, SIZE)


def test_too_few_keypoints_fall_back_to_identity():
    flat = np.full((64, 64), 128, np.uint8)  # no corner at all: no keypoint
    registration = register_pair(flat, flat, "sift", ecc=False)
    assert (registration.status, registration.keypoint_model) == ("identity", "none")
    assert np.array_equal(registration.homography, np.eye(3))


def test_finds_a_pasted_defect_on_a_shifted_pair_and_names_one_class():
    template, sample = shifted_pair(known_motion(angle_deg=1.0, shift=(3.0, -2.0)))
    truth = np.zeros((SIZE, SIZE), bool)
    truth[50:64, 70:84] = True
    sample[truth] = 255 - sample[truth]  # an inverted square: missing/extra copper
    model = create_model("classical-aoi", num_classes=1, in_channels=3).eval()
    logits = model(to_tensor(template), to_tensor(sample))
    assert logits.shape == (1, 1, SIZE, SIZE)
    found = (torch.sigmoid(logits[0, 0]) > 0.5).numpy()
    assert (found & truth).sum() / (found | truth).sum() > 0.5

    classes = create_model("classical-aoi", num_classes=7, in_channels=3).eval()
    classes.defect_class.fill_(4)
    predicted = classes(to_tensor(template), to_tensor(sample)).argmax(dim=1)[0].numpy()
    assert set(np.unique(predicted)) == {0, 4}
    assert np.array_equal(predicted == 4, found)  # same pixels, class 0 everywhere else


def test_pixels_without_a_template_source_are_never_defects():
    shift = (10, 7)  # x, y: the sample's top 7 rows and left 10 columns have no template source
    template, sample = shifted_pair(known_motion(angle_deg=0.0, shift=shift))
    sample[:shift[1]], sample[:, :shift[0]] = 255, 255  # glaring there, yet no defect
    model = create_model("classical-aoi", num_classes=1, in_channels=3, threshold=1e-4,
                         kernel_size=5, tolerance=0).eval()  # every covered pixel differs
    found = (model(to_tensor(template), to_tensor(sample))[0, 0] > 0).numpy()
    covered = np.zeros((SIZE, SIZE), bool)
    covered[shift[1]:, shift[0]:] = True
    assert not (found & ~covered).any()
    assert (found & covered).sum() > 0.95 * covered.sum()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "ocd"
    write_synth_dataset(out, SynthConfig(pairs=24, size=64, seed=3, batches=6), progress=False)
    return out


def test_calibrate_picks_the_best_threshold_of_its_grid(tiny_data):
    loader = DataLoader(PairDataset(tiny_data, "val", size=64), batch_size=4,
                        collate_fn=collate_pairs)
    model = create_model("classical-aoi", num_classes=1, in_channels=3).eval()
    chosen = model.calibrate(loader, torch.device("cpu"))
    assert chosen["threshold"] == pytest.approx(float(model.threshold))
    assert chosen["kernel_size"] == int(model.kernel_size)
    assert len(chosen["thresholds"]) >= 5 and chosen["kernel_sizes"] == [1, 3, 5]
    # brute force: every grid point through forward() and the engine's metrics
    scores = {}
    probe = create_model("classical-aoi", num_classes=1, in_channels=3)
    for kernel in chosen["kernel_sizes"]:
        for threshold in chosen["thresholds"]:
            probe.threshold.fill_(threshold)
            probe.kernel_size.fill_(kernel)
            scores[threshold, kernel] = evaluate(probe, loader, torch.device("cpu"),
                                                 1)["defect_iou"]
    best = max(scores.values())
    assert best > 0 and len(set(scores.values())) > 5  # the grid is not degenerate
    assert scores[chosen["threshold"], chosen["kernel_size"]] == pytest.approx(best)
    assert chosen["val_defect_iou"] == pytest.approx(best)


def test_calibrate_gives_every_defect_the_most_frequent_class():
    template, sample = shifted_pair(known_motion(angle_deg=1.0, shift=(2.0, 1.0)))
    masks = torch.zeros(2, SIZE, SIZE, dtype=torch.long)
    masks[0, 10:20, 10:14] = 2  # 40 pixels of class 2
    masks[1, 30:40, 30:36] = 5  # 60 pixels of class 5: the most frequent
    masks[1, 50:52, 50:52] = 2  # 4 more of class 2 (44 < 60)
    batch = {"template": to_tensor(template).repeat(2, 1, 1, 1),
             "sample": to_tensor(sample).repeat(2, 1, 1, 1), "mask": masks}
    model = create_model("classical-aoi", num_classes=7, in_channels=3)
    assert model.calibrate([batch], torch.device("cpu"))["defect_class"] == 5
    assert int(model.defect_class) == 5


def test_no_parameters_and_buffers_round_trip():
    model = create_model("classical-aoi", num_classes=7, in_channels=1, threshold=0.1,
                         kernel_size=5)
    assert list(model.parameters()) == [] and get_method("classical-aoi").paper_name is None
    model.threshold.fill_(0.0625)
    model.kernel_size.fill_(1)
    model.defect_class.fill_(3)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = create_model("classical-aoi", num_classes=7, in_channels=1)
    assert float(fresh.threshold) != 0.0625
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert (float(fresh.threshold), int(fresh.kernel_size), int(fresh.defect_class)) == (
        0.0625, 1, 3)


def test_trains_through_the_cli_and_records_the_calibration(tiny_data, tmp_path):
    run = tmp_path / "aoi"
    assert cli_main(["train", str(tiny_data), "--out", str(run), "--method", "classical-aoi",
                     "--profile", "quick", "--size", "64"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["steps"] == 0 and info["params_mb"] == 0.0
    calibration = info["calibration"]
    assert calibration["criterion"] == "val defect IoU"
    assert sum(calibration["registration"].values()) > 0
    state = torch.load(run / "best.pt", weights_only=True)["model"]
    assert float(state["threshold"]) == pytest.approx(calibration["threshold"])
    assert int(state["kernel_size"]) == calibration["kernel_size"]


def test_registration_matches_the_generators_flow_without_local_motion():
    """On generated pairs whose background moves as a whole (no component shift, no wire
    jitter), the homography agrees with the generator's ground-truth flow within 1 px."""
    from bgnet_lite.data.synth import SynthConfig
    from bgnet_lite.data.synth.pair import generate_pair

    config = SynthConfig(pairs=6, size=128, batches=3, seed=5, component_shift=0.0,
                         wire_jitter=0.0)
    for pair_index in range(3):
        pair = generate_pair(config, pair_index % 2, pair_index)
        registration = register_pair(to_grey_uint8(pair.template / 255.0),
                                     to_grey_uint8(pair.sample / 255.0))
        ys, xs = np.mgrid[0:128:4, 0:128:4].astype(np.float64)
        known = ~np.isnan(pair.flow[0][::4, ::4])
        points = np.stack([xs[known], ys[known], np.ones(known.sum())])  # sample pixels
        back = np.linalg.inv(registration.homography) @ points  # -> template pixels
        back = back[:2] / back[2]
        truth = np.stack([pair.flow[0][::4, ::4][known], pair.flow[1][::4, ::4][known]])
        moved = np.median(np.linalg.norm(points[:2] - truth, axis=0))
        error = np.median(np.linalg.norm(back - truth, axis=0))
        assert moved > 1.5, "the generator moved nothing: the test would prove nothing"
        assert error < 1.0, (pair_index, registration.status, error, moved)
