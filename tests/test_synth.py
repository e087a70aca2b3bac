"""Tests of the synthetic OCD-like generator (chapter 1, "The problem").

Every check compares against something computed independently of the generator: an FFT phase
correlation, scipy's map_coordinates, a hand-computed largest-remainder split, the similarity
formula written out again here.
"""

import csv
import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from bgnet_lite.data.io import DATASET_MARKER, SPLITS, DataError, load_flow, read_image
from bgnet_lite.data.synth import (
    DEFECT_TYPES,
    PAPER_DEFECT_COUNTS,
    SynthConfig,
    batch_splits,
    defect_counts,
    defect_schedule,
    generate_pair,
    inbatch_splits,
    render_template,
    write_synth_dataset,
)
from bgnet_lite.data.synth import writer as synth_writer
from bgnet_lite.data.synth.scene import _batch_scene

# five pairs over three batches cover every defect type once
SMALL = SynthConfig(pairs=5, size=64, batches=3)
# no photometric change at all: sample and template colours are comparable 1:1
CLEAN = dict(texture_variation=0.0, noise_std=0.0)


def pairs_of(config):
    return [
        generate_pair(config, batch, index)
        for index, (batch, _) in enumerate(defect_schedule(config))
    ]


def similarity_inverse(params, size, xs, ys):
    """Scene point seen at sample pixel (xs, ys), written out independently of the generator:
    the sample is the template scaled by s, turned by a, shifted by t about the centre c,
    i.e. q = c + s R(a) (p - c) + t, so p = c + R(-a) (q - c - t) / s."""
    c = (size - 1) / 2
    a = np.deg2rad(params["angle_deg"])
    rot_back = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    q = np.stack([xs - c - params["shift_x"], ys - c - params["shift_y"]])
    p = np.tensordot(rot_back, q, axes=1) / params["scale"] + c
    return p[0], p[1]


def grey(image):
    return image.astype(np.float64).mean(axis=2)


def test_same_seed_same_pair_other_seed_other_pair():
    first = generate_pair(SMALL, 1, 2)
    _batch_scene.cache_clear()  # re-render the batch too
    again = generate_pair(SMALL, 1, 2)
    for name in ("template", "sample", "mask"):
        assert np.array_equal(getattr(first, name), getattr(again, name)), name
    assert np.array_equal(first.flow, again.flow, equal_nan=True)
    assert first.params == again.params
    other = generate_pair(SynthConfig(pairs=5, size=64, batches=3, seed=1), 1, 2)
    assert not np.array_equal(first.template, other.template)
    assert not np.array_equal(first.sample, other.sample)


def test_masks_binary_nonempty_and_each_type_rendered():
    pairs = pairs_of(SMALL)
    assert sorted(pair.defect for pair in pairs) == sorted(DEFECT_TYPES)
    for pair in pairs:
        assert pair.mask.shape == (64, 64) and pair.mask.dtype == np.uint8
        assert set(np.unique(pair.mask)) == {0, 255}, pair.defect
        assert pair.sample.shape == pair.template.shape == (64, 64, 3)
        assert pair.sample.dtype == pair.template.dtype == np.uint8
        assert pair.flow.shape == (2, 64, 64) and pair.flow.dtype == np.float32


def test_mask_is_exactly_where_the_aligned_sample_changed():
    """variation=0 and no texture change: the sample equals the template except on the
    defect, so nothing may change outside the mask and the mask must be a visible change."""
    config = SynthConfig(pairs=10, size=96, batches=3, variation=0.0, **CLEAN)
    changed_on_mask = []
    for pair in pairs_of(config):
        changed = np.abs(pair.sample.astype(int) - pair.template.astype(int)).max(axis=2)
        on_mask = pair.mask > 0
        # anti-aliased fringes (coverage < 0.5) lie within 2 px of the mask
        near_mask = ndimage.binary_dilation(on_mask, iterations=2)
        assert changed[~near_mask].max() <= 1, pair.defect
        # a wire crossing a defect hides some of its pixels (they stay in the mask)
        assert np.mean(changed[on_mask] > 12) > 0.4, pair.defect
        changed_on_mask.append(changed[on_mask] > 12)
    assert np.mean(np.concatenate(changed_on_mask)) > 0.75


def test_shift_is_recovered_by_phase_correlation():
    config = SynthConfig(
        pairs=6,
        size=128,
        batches=3,
        max_rotation_deg=0.0,
        max_scale_change=0.0,
        component_shift=0.0,
        wire_jitter=0.0,
    )
    window = np.outer(np.hanning(128), np.hanning(128))
    shifts = []
    for index, (batch, _) in enumerate(defect_schedule(config)):
        pair = generate_pair(config, batch, index)
        template, sample = grey(pair.template), grey(pair.sample)
        spectrum = np.fft.fft2((sample - sample.mean()) * window) * np.conj(
            np.fft.fft2((template - template.mean()) * window)
        )
        correlation = np.fft.ifft2(spectrum / (np.abs(spectrum) + 1e-9)).real
        peak_y, peak_x = np.unravel_index(np.argmax(correlation), correlation.shape)
        found = [(peak_x + 64) % 128 - 64, (peak_y + 64) % 128 - 64]
        applied = [pair.params["shift_x"], pair.params["shift_y"]]
        assert abs(found[0] - applied[0]) <= 1 and abs(found[1] - applied[1]) <= 1, (found, applied)
        shifts.append(np.hypot(*applied))
    assert max(shifts) > 4  # the test saw real shifts, not only ~0


def test_flow_matches_the_similarity_formula_without_local_motion():
    config = SynthConfig(pairs=4, size=64, batches=3, component_shift=0.0)
    pair = generate_pair(config, 2, 3)
    ys, xs = np.mgrid[0:64, 0:64].astype(np.float64)
    px, py = similarity_inverse(pair.params, 64, xs, ys)
    inside = (px >= -0.5) & (px <= 63.5) & (py >= -0.5) & (py <= 63.5)
    defined = ~np.isnan(pair.flow[0])
    assert np.array_equal(defined, inside)
    assert np.allclose(pair.flow[0][inside], px[inside], atol=1e-3)
    assert np.allclose(pair.flow[1][inside], py[inside], atol=1e-3)
    # stride-4 grid: io.py's sample pixel centre ((i + 0.5) * 4 - 0.5, (j + 0.5) * 4 - 0.5)
    centres = (np.arange(16) + 0.5) * 4 - 0.5
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    px, py = similarity_inverse(pair.params, 64, cx, cy)
    inside = (px >= -0.5) & (px <= 63.5) & (py >= -0.5) & (py <= 63.5)
    assert pair.coarse_flow.shape == (2, 16, 16)
    assert np.array_equal(~np.isnan(pair.coarse_flow[0]), inside)
    assert np.allclose(pair.coarse_flow[0][inside], px[inside], atol=1e-3)
    assert np.allclose(pair.coarse_flow[1][inside], py[inside], atol=1e-3)


def test_flow_warps_the_template_onto_the_sample_background():
    """With all spatial variation on (components moved, wires jittered) but no texture
    change, sampling the template at the flow reproduces the sample's background up to
    uint8 rounding; wires and the 1-px rims of components are not background."""
    config = SynthConfig(pairs=6, size=128, batches=3, **CLEAN)

    def agreement(pair, flow_x, flow_y, keep):
        warped = np.stack(
            [
                ndimage.map_coordinates(
                    pair.template[..., c].astype(float), [flow_y, flow_x], order=1, mode="nearest"
                )
                for c in range(3)
            ],
            axis=-1,
        )
        return np.mean(np.abs(warped - pair.sample).max(axis=2)[keep] <= 1.01)

    for index, (batch, _) in enumerate(defect_schedule(config)):
        pair = generate_pair(config, batch, index)
        keep = ~np.isnan(pair.flow[0]) & ~ndimage.binary_dilation(pair.mask > 0, iterations=3)
        assert keep.mean() > 0.4
        fx, fy = np.nan_to_num(pair.flow[0]), np.nan_to_num(pair.flow[1])
        assert agreement(pair, fx, fy, keep) > 0.8, pair.defect
        # negative controls: the check notices a half-pixel error and the identity flow
        assert agreement(pair, fx + 0.5, fy, keep) < 0.65
        ys, xs = np.mgrid[0:128, 0:128].astype(float)
        assert agreement(pair, xs, ys, keep) < 0.3


def test_flow_follows_displaced_components():
    """Only the components move: their pixels must have a defined flow that points back to
    where the component is in the template (sampling there reproduces the sample)."""
    config = SynthConfig(
        pairs=3,
        size=256,
        batches=3,
        max_shift=0.0,
        max_rotation_deg=0.0,
        max_scale_change=0.0,
        wire_jitter=0.0,
        **CLEAN,
    )
    ys, xs = np.mgrid[0:256, 0:256].astype(np.float32)
    for index, (batch, _) in enumerate(defect_schedule(config)):
        pair = generate_pair(config, batch, index)
        flow_x, flow_y = pair.flow
        # NaN only where a moved component uncovered base that the template hides
        assert np.isnan(flow_x).mean() < 0.1
        moved = ~np.isnan(flow_x) & (np.hypot(flow_x - xs, flow_y - ys) >= 1)
        moved &= ~ndimage.binary_dilation(pair.mask > 0, iterations=3)
        assert moved.mean() > 0.03  # the components (several % of the image) moved
        coords = [np.nan_to_num(flow_y), np.nan_to_num(flow_x)]
        warped = np.stack(
            [
                ndimage.map_coordinates(
                    pair.template[..., c].astype(float), coords, order=1, mode="nearest"
                )
                for c in range(3)
            ],
            axis=-1,
        )
        error = np.abs(warped - pair.sample).max(axis=2)[moved]
        identity = np.abs(pair.template.astype(float) - pair.sample).max(axis=2)[moved]
        assert np.mean(error <= 1.01) > 0.6  # the rest: component rims, wires over them
        assert np.mean(identity <= 1.01) < 0.3


def test_variation_zero_gives_identity_flow():
    config = SynthConfig(pairs=5, size=64, batches=3, variation=0.0)
    ys, xs = np.mgrid[0:64, 0:64].astype(np.float32)
    for pair in pairs_of(config):
        assert not np.isnan(pair.flow).any()
        assert np.array_equal(pair.flow[0], xs) and np.array_equal(pair.flow[1], ys)
        assert pair.params["shift_x"] == pair.params["shift_y"] == pair.params["angle_deg"] == 0
        assert pair.params["scale"] == 1


def test_default_variation_spans_a_feature_cell():
    """Median misalignment over many pairs >= size / 16: at 128 px that is one cell of the
    1/8 feature map, so the matching has real work to do."""
    config = SynthConfig(pairs=48, size=64, batches=12)
    ys, xs = np.mgrid[0:64, 0:64].astype(np.float32)
    moves = []
    for index, (batch, _) in enumerate(defect_schedule(config)):
        pair = generate_pair(config, batch, index)
        move = np.hypot(pair.flow[0] - xs, pair.flow[1] - ys)
        moves.append(move[~np.isnan(move)])
    assert np.median(np.concatenate(moves)) >= 64 / 16


def test_defect_counts_mirror_the_paper():
    assert defect_counts(918) == PAPER_DEFECT_COUNTS
    # largest remainder by hand for 100 pairs: quotas 6.54, 2.94, 40.85, 26.14, 23.53
    assert defect_counts(100) == {
        "base_crush": 7,
        "base_scratch": 3,
        "contamination": 41,
        "breakage": 26,
        "wire_count": 23,
    }
    for pairs in range(5, 60):
        counts = defect_counts(pairs)
        assert sum(counts.values()) == pairs and min(counts.values()) >= 1
    config = SynthConfig()
    scheduled = [defect for _, defect in defect_schedule(config)]
    assert {name: scheduled.count(name) for name in DEFECT_TYPES} == PAPER_DEFECT_COUNTS


def test_batch_split_separates_batches_and_inbatch_split_covers_them():
    config = SynthConfig()
    schedule = defect_schedule(config)
    split = batch_splits(config)
    batches_in = {name: {b for b, _ in schedule if split[b] == name} for name in SPLITS}
    assert [len(batches_in[name]) for name in ("train", "val", "test")] == [16, 4, 4]
    assert not (batches_in["train"] & batches_in["val"])
    assert not (batches_in["train"] & batches_in["test"])
    assert not (batches_in["val"] & batches_in["test"])
    inbatch = inbatch_splits(config)
    train_batches = {schedule[i][0] for i, name in enumerate(inbatch) if name == "train"}
    assert train_batches == set(range(config.batches))
    assert {schedule[i][0] for i, name in enumerate(inbatch) if name == "test"} != set()
    assert set(inbatch) == {"train", "val", "test"}


def test_write_synth_dataset(tmp_path):
    config = SynthConfig(pairs=6, size=64, batches=3)
    out = write_synth_dataset(tmp_path / "ds", config, progress=False)
    with open(out / "pairs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
        columns = list(rows[0].keys())
    assert columns == [
        "template",
        "sample",
        "mask",
        "split",
        "split_inbatch",
        "batch",
        "defect",
        "flow",
    ]
    assert len(rows) == 6
    assert sorted({row["template"] for row in rows}) == [f"template/b{b:02d}.png" for b in range(3)]
    for index, row in enumerate(rows):
        for column in ("template", "sample", "mask", "flow"):
            assert (out / row[column]).is_file(), row[column]
        sample = read_image(out / row["sample"])
        flow, stride = load_flow(out / row["flow"], sample.shape[:2])
        assert stride == 4 and flow.shape == (2, 16, 16)
        pair = generate_pair(config, int(row["batch"]), index)
        assert np.array_equal(sample, pair.sample)
        assert np.array_equal(read_image(out / row["mask"], kind="mask"), pair.mask)
        assert np.array_equal(
            read_image(out / row["template"]), render_template(config, int(row["batch"]))
        )
        assert np.allclose(flow, pair.coarse_flow, atol=0.05, equal_nan=True)
        assert row["defect"] == pair.defect
    assert {row["split"] for row in rows} == {"train", "val", "test"}
    assert (
        SynthConfig(
            **{
                key: tuple(value) if isinstance(value, list) else value
                for key, value in json.loads((out / "synth_config.json").read_text()).items()
            }
        )
        == config
    )


def test_two_workers_write_the_same_bytes(tmp_path):
    config = SynthConfig(pairs=6, size=64, batches=3)
    one = write_synth_dataset(tmp_path / "one", config, progress=False, workers=1)
    two = write_synth_dataset(tmp_path / "two", config, progress=False, workers=2)
    files = sorted(path.relative_to(one) for path in one.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(two) for path in two.rglob("*") if path.is_file())
    for name in files:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_failure_midway_leaves_no_folder(tmp_path, monkeypatch):
    calls = []
    real = synth_writer.generate_pair

    def failing(config, batch, index):
        calls.append(index)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return real(config, batch, index)

    monkeypatch.setattr(synth_writer, "generate_pair", failing)
    with pytest.raises(RuntimeError, match="boom"):
        write_synth_dataset(
            tmp_path / "ds", SynthConfig(pairs=6, size=64, batches=3), progress=False
        )
    assert list(tmp_path.iterdir()) == []


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="multiple of 8"):
        SynthConfig(size=100)
    with pytest.raises(ValueError, match="batches"):
        SynthConfig(pairs=2, batches=3)
    with pytest.raises(ValueError, match="batch_index"):
        generate_pair(SMALL, 3, 0)


# sha256 of two small datasets written by the generator before it was split into modules
# (commit e0ac54f); the split, and any refactor after it, must reproduce them exactly.
REFERENCE_SETS = {
    "pairs24-size64-seed0-v1": (
        SynthConfig(pairs=24, size=64, seed=0, variation=1.0),
        "ca5caae56554a8d62e53dd1dce34f2d24106b2db5161e56f408ab6919dd30484",
    ),
    "pairs12-size96-seed3-v0.5": (
        SynthConfig(pairs=12, size=96, seed=3, variation=0.5, batches=4),
        "b1015c98df7e3efefd0e3f7a48baf0eb85261604b2e24cc6e1ca71c69f191ed0",
    ),
}


def dataset_digest(root):
    """sha256 over every file (sorted relative path, then content) but the writer's marker.
    PNGs count by their decoded pixels, so a different zlib build that packs the same image
    differently passes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != DATASET_MARKER):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        if path.suffix == ".png":
            with Image.open(path) as image:
                digest.update(f"{image.mode} {image.size}".encode())
                digest.update(np.asarray(image).tobytes())
        else:
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("name", sorted(REFERENCE_SETS))
def test_written_dataset_is_unchanged(tmp_path, name, workers):
    config, expected = REFERENCE_SETS[name]
    out = write_synth_dataset(tmp_path / name, config, progress=False, workers=workers)
    assert dataset_digest(out) == expected, (
        f"{name}: the generator's output changed; if that is intended (new numpy/scipy "
        "rounding, a deliberate generator change), store the new digest here"
    )


def test_overwrite_replaces_a_dataset_but_never_another_folder(tmp_path):
    config = SynthConfig(pairs=6, size=32, batches=3, seed=1)
    unrelated = tmp_path / "photos"
    unrelated.mkdir()
    (unrelated / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(DataError, match="not a dataset folder bgnet-lite wrote"):
        write_synth_dataset(unrelated, config, overwrite=True, progress=False)
    assert (unrelated / "holiday.jpg").read_bytes() == b"not ours"
    # a reader's own dataset (pairs.csv, no marker) is not replaced either
    own = tmp_path / "my_pairs"
    (own / "template").mkdir(parents=True)
    (own / "pairs.csv").write_text("template,sample,mask\n")
    with pytest.raises(DataError, match="no .bgnet-lite-dataset marker"):
        write_synth_dataset(own, config, overwrite=True, progress=False)
    assert (own / "pairs.csv").is_file() and (own / "template").is_dir()
    assert not list(tmp_path.glob(".photos.*.part"))  # nothing half-written left behind
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(DataError, match="is a file"):
        write_synth_dataset(a_file, config, overwrite=True, progress=False)
    dataset = write_synth_dataset(tmp_path / "ds", config, progress=False)
    again = write_synth_dataset(dataset, SynthConfig(pairs=9, size=32, batches=3),
                                overwrite=True, progress=False)
    assert len((again / "pairs.csv").read_text().splitlines()) == 10  # header + 9 pairs


def test_cli_synth_bad_settings_are_one_line(tmp_path, capsys):
    from bgnet_lite.cli import main as cli_main

    assert cli_main(["data", "synth", str(tmp_path / "ds"), "--pairs", "2"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: data synth: pairs (2) must be >= batches")
    assert "Traceback" not in error and not (tmp_path / "ds").exists()
