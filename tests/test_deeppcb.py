"""Tests for the DeepPCB preparation (chapter 1): honest masks, splits, flow, errors.

The synthetic fixture is written in DeepPCB's layout.  Its truth is independent of the code:
the test image is the template shifted by a known offset, with defects of known shape inserted
(and 1-px edge jitter as alignment noise), so the expected mask is "inserted rectangle minus /
intersected with the shifted template", computed here with plain numpy.
"""

from __future__ import annotations

import csv
import json
import os
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from bgnet_lite.data import deeppcb
from bgnet_lite.data.deeppcb import (
    CLASSES,
    DeepPCBConfig,
    derive_pair_mask,
    download_deeppcb,
    find_pcbdata,
    prepare_deeppcb,
)
from bgnet_lite.data.io import DataError

SIZE = 128
ADDED = {2, 4, 5}  # short, spur, copper


def shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``out[y, x] = image[y - dy, x - dx]``, empty outside (a plain-numpy reference)."""
    out = np.zeros_like(image)
    height, width = image.shape
    for y in range(height):
        for x in range(width):
            if 0 <= y - dy < height and 0 <= x - dx < width:
                out[y, x] = image[y - dy, x - dx]
    return out


def rect(y0, y1, x0, x1) -> np.ndarray:
    """Bool image with the inclusive rectangle rows y0..y1, columns x0..x1 set."""
    out = np.zeros((SIZE, SIZE), dtype=bool)
    out[y0: y1 + 1, x0: x1 + 1] = True
    return out


def layout() -> np.ndarray:
    """Template copper: three traces and a pad."""
    return (rect(20, 27, 10, 117) | rect(40, 47, 10, 117) | rect(58, 117, 30, 37)
            | rect(70, 99, 70, 99))


def make_pair(shift, defects, jitter=True):
    """``defects``: list of (cls, rectangle-in-test-coordinates, box).  Returns
    template, test (bool copper), boxes and the per-box truth masks (full image)."""
    template = layout()
    aligned = shifted(template, *shift)
    test = aligned.copy()
    truths = []
    for cls, area, _box in defects:
        if cls in ADDED:
            truths.append(area & ~aligned)
            test |= area
        else:
            truths.append(area & aligned)
            test &= ~area
    if jitter:  # 1-px edge jitter on the second trace: alignment noise, not a defect
        y_top = 40 + shift[0] - 1
        y_bottom = 47 + shift[0]
        test[y_top, 88:115] = True
        test[y_bottom, 88:115] = False
    boxes = [box + (cls,) for cls, _area, box in defects]
    return template, test, boxes, truths


PAIRS = {
    # stem: (split, shift, defects)
    "group00041/00041/00041000": ("trainval", (2, -3), [
        (2, rect(30, 41, 60, 65), (55, 25, 70, 46)),  # short bridging two traces
        (1, rect(80, 85, 27, 34), (22, 76, 39, 89)),  # open cutting the vertical trace
        (3, rect(72, 76, 78, 84), (74, 68, 88, 80)),  # mousebite on the pad's top edge
    ]),
    "group00041/00041/00041001": ("trainval", (0, 0), [
        (4, rect(48, 52, 50, 55), (46, 45, 60, 57)),  # spur under the second trace
        (6, rect(84, 88, 84, 88), (80, 80, 92, 92)),  # pin-hole in the pad
    ]),
    "group12000/12000/12000000": ("test", (-4, 5), [
        (5, rect(104, 110, 100, 106), (97, 100, 110, 113)),  # copper splash
        (3, rect(90, 93, 33, 40), (30, 86, 46, 97)),  # mousebite on the vertical trace
    ]),
}


def to_jpeg(path: Path, copper: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(copper, 0, 255).astype(np.uint8)).save(path, quality=95)


def write_fixture(root: Path) -> dict:
    """DeepPCB layout under ``root/PCBData``; returns the truth per pair."""
    pcb = root / "PCBData"
    truth, lines = {}, {"trainval": [], "test": []}
    for stem, (split, shift, defects) in PAIRS.items():
        template, test, boxes, truths = make_pair(shift, defects)
        to_jpeg(pcb / f"{stem}_temp.jpg", template)
        to_jpeg(pcb / f"{stem}_test.jpg", test)
        group, batch, pair_id = stem.split("/")
        annotation = f"{group}/{batch}_not/{pair_id}.txt"
        (pcb / annotation).parent.mkdir(parents=True, exist_ok=True)
        (pcb / annotation).write_text("".join(" ".join(map(str, b)) + "\n" for b in boxes))
        lines[split].append(f"{stem}.jpg {annotation}")
        truth[pair_id] = (split, shift, boxes, truths, template, test)
    # The excluded pair (labels drawn into the image) and an orphan template.
    excluded = "group44000/44000/44000020"
    template, test, boxes, _ = make_pair((0, 0), PAIRS["group00041/00041/00041001"][2])
    to_jpeg(pcb / f"{excluded}_temp.jpg", template)
    to_jpeg(pcb / f"{excluded}_test.jpg", test)
    (pcb / "group44000/44000_not").mkdir(parents=True)
    (pcb / "group44000/44000_not/44000020.txt").write_text("46 45 60 57 4\n")
    lines["test"].append(f"{excluded}.jpg group44000/44000_not/44000020.txt")
    to_jpeg(pcb / "group90100/90100/90100034_temp.jpg", template)
    (pcb / "trainval.txt").write_text("\n".join(lines["trainval"]) + "\n")
    (pcb / "test.txt").write_text("\n".join(lines["test"]) + "\n")
    return truth


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


@pytest.fixture
def fixture_root(tmp_path):
    root = tmp_path / "DeepPCB"
    truth = write_fixture(root)
    return root, truth


def read_rows(folder: Path) -> list[dict]:
    with open(folder / "pairs.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------- mask derivation

@pytest.mark.parametrize("stem", list(PAIRS))
def test_derived_masks_match_inserted_defects(stem):
    split, shift, defects = PAIRS[stem]
    template, test, boxes, truths = make_pair(shift, defects)
    mask, info = derive_pair_mask(template, test, boxes)
    assert tuple(info["global_shift"]) == shift
    for (x1, y1, x2, y2, cls), truth in zip(boxes, truths, strict=True):
        truth_in_box = truth[y1: y2 + 1, x1: x2 + 1]
        assert truth_in_box.sum() >= 16, "fixture defect must be visible"
        derived = mask[y1: y2 + 1, x1: x2 + 1] == cls
        assert iou(derived, truth_in_box) >= 0.9, (stem, cls)
    inside = np.zeros_like(mask, dtype=bool)
    for x1, y1, x2, y2, _ in boxes:
        inside[y1: y2 + 1, x1: x2 + 1] = True
    assert not mask[~inside].any()


def test_control_box_on_jittered_edges_stays_empty():
    template, test, boxes, _ = make_pair(*PAIRS["group00041/00041/00041000"][1:])
    # Same region (the jittered trace edges), once per polarity.
    controls = [(88, 36, 110, 54, 2), (88, 36, 110, 54, 1)]
    _, info = derive_pair_mask(template, test, boxes, control_boxes=controls)
    derived = [d for d, _ in info["controls"]]
    naive = [n for _, n in info["controls"]]
    assert derived == [0, 0]
    # The naive in-box difference sees the jitter and the global shift there.
    region = test[36:55, 88:111] != template[36:55, 88:111]
    assert naive == [int(region.sum())] * 2 and naive[0] > 0


def test_polarity_added_copper_in_open_box_is_ignored():
    template = layout()
    test = template.copy()
    notch = rect(80, 85, 30, 37)  # open: the vertical trace is cut
    blob = rect(80, 85, 42, 47)  # added copper next to it, inside the same box
    test &= ~notch
    test |= blob
    box = (25, 75, 52, 90, 1)
    mask, _ = derive_pair_mask(template, test, [box])
    assert not mask[blob].any()
    assert iou(mask == 1, notch) >= 0.9
    # Labelled as short instead, the same box keeps the blob and drops the cut.
    mask, _ = derive_pair_mask(template, test, [box[:4] + (2,)])
    assert iou(mask == 2, blob) >= 0.9 and not mask[notch].any()


def test_per_box_shift_follows_a_local_displacement():
    template = layout()
    test = shifted(template, 2, -3)
    local = np.zeros_like(test)
    local[66:108, 62:108] = True  # this part of the board moved 2 px further
    test[local] = shifted(template, 4, -1)[local]
    notch = rect(95, 101, 80, 86) & shifted(template, 4, -1)  # pin-hole at the pad
    test &= ~notch
    box = (76, 90, 90, 105, 6)
    mask, info = derive_pair_mask(template, test, [box])
    assert tuple(info["global_shift"]) == (2, -3)
    assert tuple(info["box_shifts"][0]) == (4, -1)
    assert iou(mask == 6, notch) >= 0.9


def test_overlapping_boxes_smaller_box_wins():
    template = layout()
    test = template | rect(30, 35, 60, 64)
    big, small = (50, 22, 80, 45, 5), (56, 27, 68, 38, 2)
    mask, _ = derive_pair_mask(template, test, [small, big])
    assert (mask[30:36, 60:65] == 2).all()


# --------------------------------------------------------------------------- resizing

def test_resize_binary_is_area_average():
    rng = np.random.default_rng(0)
    image = rng.random((10, 10)) > 0.5
    # Reference: 10 -> 4 is a 2.5 ratio; on a 2x upsampled grid each output pixel is 5x5.
    up = np.kron(image.astype(float), np.ones((2, 2)))
    reference = up.reshape(4, 5, 4, 5).mean(axis=(1, 3)) >= 0.5
    assert np.array_equal(deeppcb.resize_binary(image, 4), reference)


def test_resize_mask_keeps_thin_defects():
    mask = np.zeros((128, 128), dtype=np.uint8)
    mask[40:60, 5] = 1  # one pixel wide: nearest-neighbour sampling at 64 would drop it
    mask[90, 70:80] = 3
    small = deeppcb.resize_mask(mask, 64)
    assert set(np.unique(small)) == {0, 1, 3}
    assert (small[20:30, 2] == 1).all() and (small[45, 35:40] == 3).all()


# --------------------------------------------------------------------------- dataset

def test_prepare_writes_dataset_with_right_splits_and_masks(fixture_root, tmp_path):
    root, truth = fixture_root
    out = tmp_path / "out"
    stats = prepare_deeppcb(out, source=root, config=DeepPCBConfig(
        size=SIZE, val_fraction=0.5, workers=1), progress=False)
    rows = read_rows(out)
    assert list(rows[0]) == ["template", "sample", "mask", "split", "batch", "defect",
                             "source", "flow"]
    assert len(rows) == 3
    by_id = {Path(row["mask"]).stem: row for row in rows}
    assert set(by_id) == set(truth)
    assert by_id["12000000"]["split"] == "test"
    assert sorted(by_id[p]["split"] for p in ("00041000", "00041001")) == ["train", "val"]
    assert by_id["12000000"]["batch"] == "12000"
    assert by_id["00041000"]["source"] == "PCBData/group00041/00041/00041000_test.jpg"
    for pair_id, (_split, _shift, boxes, truths, _template, test) in truth.items():
        row = by_id[pair_id]
        mask = np.array(Image.open(out / row["mask"]))
        for (x1, y1, x2, y2, cls), truth_mask in zip(boxes, truths, strict=True):
            derived = mask[y1: y2 + 1, x1: x2 + 1] == cls
            assert iou(derived, truth_mask[y1: y2 + 1, x1: x2 + 1]) >= 0.9, (pair_id, cls)
        expected_names = " ".join(CLASSES[c] for c in sorted({b[4] for b in boxes}))
        assert row["defect"] == expected_names
        sample = np.array(Image.open(out / row["sample"]))
        assert set(np.unique(sample)) <= {0, 255}
        assert np.array_equal(sample == 0, test)  # size 128 = input size: copper unchanged

    assert stats["pairs"]["used"] == 3
    excluded = {item["pair"] for item in stats["pairs"]["excluded"]}
    assert excluded == {"group44000/44000/44000020", "group90100/90100/90100034"}
    expected = dict.fromkeys(CLASSES[1:], 0)
    for _split, _shift, defects in PAIRS.values():
        for cls, _area, _box in defects:
            expected[CLASSES[cls]] += 1
    assert stats["boxes"]["per_class"] == expected
    assert sum(stats["boxes"]["empty_per_class"].values()) == 0
    assert stats["per_split"] == {"train": 1, "val": 1, "test": 1}
    assert stats["controls"]["boxes"] + stats["controls"]["not_placed"] == sum(expected.values())
    assert json.loads((out / "deeppcb_stats.json").read_text())["boxes"] == stats["boxes"]
    assert "open" in deeppcb.format_stats(stats)


def test_flow_without_misalignment_is_the_known_shift(fixture_root, tmp_path):
    root, truth = fixture_root
    out = tmp_path / "out"
    prepare_deeppcb(out, source=root, config=DeepPCBConfig(size=SIZE, workers=1),
                    progress=False)
    for row in read_rows(out):
        _split, (dy, dx), *_ = truth[Path(row["mask"]).stem]
        flow = np.load(out / row["flow"])
        stride = SIZE // flow.shape[1]
        centres = (np.arange(flow.shape[1]) + 0.5) * stride - 0.5
        expect_x = np.broadcast_to(centres[None, :] - dx, flow.shape[1:])
        expect_y = np.broadcast_to(centres[:, None] - dy, flow.shape[1:])
        inside = ((expect_x >= -0.5) & (expect_x <= SIZE - 0.5)
                  & (expect_y >= -0.5) & (expect_y <= SIZE - 0.5))
        assert np.array_equal(np.isnan(flow[0]), ~inside)
        assert np.allclose(flow[0][inside], expect_x[inside])
        assert np.allclose(flow[1][inside], expect_y[inside])


def test_misaligned_template_follows_recorded_flow(fixture_root, tmp_path):
    root, truth = fixture_root
    out = tmp_path / "out"
    prepare_deeppcb(out, source=root, config=DeepPCBConfig(size=SIZE, misalign=0.08, seed=3,
                                                           workers=2), progress=False)
    flow_ious, identity_ious = [], []
    for row in read_rows(out):
        template = (np.array(Image.open(out / row["template"])) == 0).astype(float)
        sample = (np.array(Image.open(out / row["sample"])) == 0).astype(float)
        defects = ndimage.binary_dilation(np.array(Image.open(out / row["mask"])) > 0,
                                          iterations=3)
        flow = np.load(out / row["flow"]).astype(np.float64)
        stride = SIZE // flow.shape[1]
        centres = (np.arange(flow.shape[1]) + 0.5) * stride - 0.5
        grid_y, grid_x = np.meshgrid(centres, centres, indexing="ij")
        # Compare only where the sample is uniform around the point (off edges, where a
        # thresholded bilinear lookup is ambiguous) and free of defects.
        uniform = (ndimage.maximum_filter(sample, 6) == ndimage.minimum_filter(sample, 6))
        uniform &= ~defects
        valid = ~np.isnan(flow[0])
        valid &= ndimage.map_coordinates(uniform.astype(float), [grid_y, grid_x], order=0) > 0
        assert valid.mean() > 0.3
        seen = ndimage.map_coordinates(sample, [grid_y, grid_x], order=1) >= 0.5
        warped = ndimage.map_coordinates(template, [np.nan_to_num(flow[1]),
                                                    np.nan_to_num(flow[0])], order=1) >= 0.5
        unwarped = ndimage.map_coordinates(template, [grid_y, grid_x], order=1) >= 0.5
        flow_ious.append(iou(warped & valid, seen & valid))
        identity_ious.append(iou(unwarped & valid, seen & valid))
    assert min(flow_ious) >= 0.95, flow_ious
    assert max(identity_ious) < 0.8, identity_ious  # the warp really moved the template


def test_prepare_is_independent_of_worker_count(fixture_root, tmp_path):
    root, _ = fixture_root
    config = DeepPCBConfig(size=64, misalign=0.02, workers=1)
    prepare_deeppcb(tmp_path / "one", source=root, config=config, progress=False)
    config.workers = 2
    prepare_deeppcb(tmp_path / "two", source=root, config=config, progress=False)
    for row in read_rows(tmp_path / "one"):
        for column in ("template", "mask", "flow"):
            assert (tmp_path / "one" / row[column]).read_bytes() == \
                (tmp_path / "two" / row[column]).read_bytes()


def test_limit_takes_first_pairs_of_each_split(fixture_root, tmp_path):
    root, _ = fixture_root
    stats = prepare_deeppcb(tmp_path / "out", source=root, config=DeepPCBConfig(
        size=32, limit=1, workers=1), progress=False)
    rows = read_rows(tmp_path / "out")
    assert sorted(Path(r["mask"]).stem for r in rows) == ["00041000", "12000000"]
    assert stats["pairs"]["used"] == 2


# --------------------------------------------------------------------------- sources, errors

def test_bad_source_folder_names_the_path(tmp_path):
    (tmp_path / "PCBData").mkdir()
    with pytest.raises(DataError, match=str(tmp_path)) as error:
        find_pcbdata(tmp_path)
    assert "--download" in str(error.value)
    with pytest.raises(DataError, match="--download"):
        prepare_deeppcb(tmp_path / "out", source=None)
    assert not (tmp_path / "out").exists()


def test_cli_is_the_entry_point(fixture_root, tmp_path, capsys):
    """``bgnet-lite data deeppcb`` builds the same folder as the function and prints the
    report; a bad request exits 2 with the message."""
    from bgnet_lite.cli import main as cli_main

    root, _ = fixture_root
    out = tmp_path / "cli"
    assert cli_main(["data", "deeppcb", str(out), "--source", str(root), "--size", "64",
                     "--limit", "1"]) == 0
    assert "pairs used: 2" in capsys.readouterr().out
    direct = tmp_path / "direct"
    prepare_deeppcb(direct, source=root, config=DeepPCBConfig(size=64, limit=1),
                    progress=False)
    for path in sorted(direct.rglob("*.png")) + sorted(direct.rglob("*.npy")):
        assert path.read_bytes() == (out / path.relative_to(direct)).read_bytes(), path
    assert read_rows(out) == read_rows(direct)
    assert cli_main(["data", "deeppcb", str(tmp_path / "none")]) == 2
    assert "--download" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_find_pcbdata_accepts_root_or_pcbdata(fixture_root):
    root, _ = fixture_root
    assert find_pcbdata(root) == root / "PCBData"
    assert find_pcbdata(root / "PCBData") == root / "PCBData"


def test_bad_annotation_line_fails_without_leaving_output(fixture_root, tmp_path):
    root, _ = fixture_root
    bad = root / "PCBData/group00041/00041_not/00041001.txt"
    bad.write_text("46 45 60 57 9\n")
    with pytest.raises(DataError, match="00041001.txt"):
        prepare_deeppcb(tmp_path / "out", source=root, config=DeepPCBConfig(workers=1),
                        progress=False)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_download_uses_cached_archive_offline(fixture_root, tmp_path, monkeypatch):
    root, _ = fixture_root
    cache = tmp_path / "cache"
    cache.mkdir()
    with zipfile.ZipFile(cache / "DeepPCB-master.zip", "w") as archive:
        for path in (root / "PCBData").rglob("*"):
            archive.write(path, Path("DeepPCB-master") / path.relative_to(root))

    def no_network(*args, **kwargs):
        raise AssertionError("must not download when the archive is cached")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    pcbdata = download_deeppcb(cache)
    assert pcbdata == cache / "DeepPCB-master" / "PCBData"
    assert (pcbdata / "trainval.txt").read_text() == (root / "PCBData/trainval.txt").read_text()


def test_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="--source"):
        download_deeppcb(tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.part"))


# --------------------------------------------------------------------------- real DeepPCB

def shared_deeppcb() -> Path | None:
    candidates = [Path(__file__).resolve().parents[2] / "shared/datasets/deeppcb"]
    if os.environ.get("BGNET_DEEPPCB"):
        candidates.append(Path(os.environ["BGNET_DEEPPCB"]))
    return next((c for c in candidates if (c / "PCBData" / "trainval.txt").is_file()), None)


needs_deeppcb = pytest.mark.skipif(
    shared_deeppcb() is None,
    reason="DeepPCB copy not found at ../shared/datasets/deeppcb; set BGNET_DEEPPCB to a folder "
           "holding PCBData/ to run this test",
)


@needs_deeppcb
def test_real_deeppcb_masks_nonempty_and_controls_clean(tmp_path):
    out = tmp_path / "deeppcb"
    stats = prepare_deeppcb(out, source=shared_deeppcb(), config=DeepPCBConfig(
        size=256, limit=10, workers=2), progress=False)
    pcbdata = shared_deeppcb() / "PCBData"
    found = total = 0
    for row in read_rows(out):
        mask = np.array(Image.open(out / row["mask"]))
        stem = row["source"].removeprefix("PCBData/").removesuffix("_test.jpg")
        group, batch, pair_id = stem.split("/")
        lines = (pcbdata / group / f"{batch}_not" / f"{pair_id}.txt").read_text().split("\n")
        for line in filter(str.strip, lines):
            x1, y1, x2, y2, cls = (int(v) for v in line.replace(",", " ").split())
            scale = 256 / 640
            region = mask[int(y1 * scale): int(np.ceil((y2 + 1) * scale)),
                          int(x1 * scale): int(np.ceil((x2 + 1) * scale))]
            total += 1
            found += bool((region == cls).any())
    assert total > 100
    assert found / total >= 0.95
    controls = stats["controls"]
    assert controls["boxes"] >= 0.9 * total
    assert controls["derived_rate"] <= 0.05
    assert controls["naive_rate"] >= 0.5  # the controls do sit on copper edges


@needs_deeppcb
def test_real_deeppcb_poorly_aligned_groups():
    pcbdata = shared_deeppcb() / "PCBData"
    lines = (pcbdata / "test.txt").read_text().split("\n")
    chosen = [line.split() for line in lines if line.startswith("group90100")][:4]
    lines = (pcbdata / "trainval.txt").read_text().split("\n")
    chosen += [line.split() for line in lines if line.startswith("group13000")][:4]
    nonempty = boxes_total = control_hits = naive_hits = controls_total = 0
    shifted_pairs = 0
    for image, annotation in chosen:
        stem = image.removesuffix(".jpg")
        template = np.array(Image.open(pcbdata / f"{stem}_temp.jpg").convert("L")) < 128
        test = np.array(Image.open(pcbdata / f"{stem}_test.jpg").convert("L")) < 128
        boxes = deeppcb.read_boxes(pcbdata / annotation, test.shape)
        controls = deeppcb.make_control_boxes(template, boxes, np.random.default_rng(1))
        _, info = derive_pair_mask(template, test, boxes, control_boxes=controls)
        shifted_pairs += info["global_shift"] != (0, 0)
        nonempty += sum(p > 0 for p in info["box_pixels"])
        boxes_total += len(boxes)
        control_hits += sum(d > 0 for d, _ in info["controls"])
        naive_hits += sum(n > 0 for _, n in info["controls"])
        controls_total += len(controls)
    assert shifted_pairs >= 4  # these groups really are misaligned
    assert nonempty / boxes_total >= 0.95
    assert control_hits / controls_total <= 0.05
    assert naive_hits / controls_total >= 0.5


def test_prepared_folder_is_a_valid_multiclass_dataset(fixture_root, tmp_path):
    from bgnet_lite.data.folder import PairDataset, check_dataset

    root, truth = fixture_root
    out = tmp_path / "out"
    prepare_deeppcb(out, source=root, config=DeepPCBConfig(size=SIZE, val_fraction=0.5,
                                                           workers=1), progress=False)
    summary, problems = check_dataset(out)
    assert problems == []
    assert summary["classes"] == list(CLASSES)
    dataset = PairDataset(out)
    assert dataset.num_classes == 7
    item = dataset[0]
    assert item["template"].shape == (3, SIZE, SIZE)
    assert int(item["mask"].max()) in range(1, 7)
