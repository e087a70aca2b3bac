"""The dataset folder format, its validator and the shared torch Dataset: one test per bad input."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgnet_lite.cli import main as cli_main
from bgnet_lite.data.folder import (
    Augment,
    PairDataset,
    check_dataset,
    collate_pairs,
    deterministic_split,
    list_pairs,
)
from bgnet_lite.data.io import DataError, DatasetWriter, read_image


def _image(size=(32, 32), rgb=True, seed=0):
    rng = np.random.default_rng(seed)
    shape = (*size, 3) if rgb else size
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _mask(size=(32, 32)):
    mask = np.zeros(size, np.uint8)
    mask[8:16, 8:16] = 255
    return mask


def make_folder(root, names=("a", "b", "c"), rgb=True):
    for sub in ("template", "sample", "mask"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(_image(rgb=rgb, seed=i)).save(root / "template" / f"{name}.png")
        Image.fromarray(_image(rgb=rgb, seed=10 + i)).save(root / "sample" / f"{name}.png")
        Image.fromarray(_mask()).save(root / "mask" / f"{name}.png")
    return root


def problems_of(root):
    return check_dataset(root)[1]


def assert_one_problem_naming(root, path, *words):
    problems = problems_of(root)
    assert problems, "expected a problem"
    hit = [p for p in problems if str(path) in p]
    assert hit, f"no problem names {path}: {problems}"
    for word in words:
        assert any(word in p for p in hit), f"{word!r} not in {hit}"
    with pytest.raises(DataError):
        list(PairDataset(root))  # strict listing or item loading must refuse it too


def test_valid_folder_and_dataset_items(tmp_path):
    root = make_folder(tmp_path / "ds")
    summary, problems = check_dataset(root)
    assert problems == []
    assert summary["pairs"] == 3
    dataset = PairDataset(root)
    item = dataset[0]
    assert item["template"].shape == (3, 32, 32) and item["sample"].shape == (3, 32, 32)
    assert str(item["mask"].dtype) == "torch.int64"
    assert set(item["mask"].unique().tolist()) == {0, 1}
    assert item["mask"].sum().item() == 64  # the 8x8 square, independent truth
    assert item["flow"].shape == (2, 8, 8) and item["flow"].isnan().all()
    assert item["meta"]["name"] == "a"
    batch = collate_pairs([dataset[0], dataset[1]])
    assert batch["template"].shape == (2, 3, 32, 32)


def test_greyscale_images_are_repeated_to_three_channels(tmp_path):
    root = make_folder(tmp_path / "ds", rgb=False)
    item = PairDataset(root)[0]
    grey = read_image(root / "sample" / "a.png")
    assert item["sample"].shape == (3, 32, 32)
    np.testing.assert_allclose(item["sample"][1].numpy(), grey / 255.0, atol=1e-6)


def test_single_template_serves_every_sample(tmp_path):
    root = make_folder(tmp_path / "ds")
    (root / "template" / "b.png").unlink()
    (root / "template" / "c.png").unlink()
    (root / "template" / "a.png").rename(root / "template" / "golden.png")
    table, problems = list_pairs(root)
    assert problems == []
    assert {r.template.name for r in table.records} == {"golden.png"}


def test_deterministic_split_is_said_and_stable(tmp_path):
    root = make_folder(tmp_path / "ds")
    table, _ = list_pairs(root)
    assert any("deterministic" in note for note in table.notes)
    assert [r.split for r in table.records] == [deterministic_split(f"sample/{n}.png")
                                                for n in "abc"]


def test_csv_with_shared_template_and_extra_columns(tmp_path):
    root = make_folder(tmp_path / "ds")
    with open(root / "pairs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["template", "sample", "mask", "split", "batch"])
        for name in "abc":
            writer.writerow(["template/a.png", f"sample/{name}.png", f"mask/{name}.png", "test", 7])
    table, problems = list_pairs(root)
    assert problems == [] and len(table.records) == 3
    assert all(r.split == "test" and r.meta["batch"] == "7" for r in table.records)


def test_missing_template_counterpart(tmp_path):
    root = make_folder(tmp_path / "ds")
    (root / "template" / "b.png").unlink()
    assert_one_problem_naming(root, root / "sample" / "b.png", "no template")


def test_missing_mask_counterpart(tmp_path):
    root = make_folder(tmp_path / "ds")
    (root / "mask" / "c.png").unlink()
    assert_one_problem_naming(root, root / "sample" / "c.png", "no mask")


def test_mask_without_sample(tmp_path):
    root = make_folder(tmp_path / "ds")
    Image.fromarray(_mask()).save(root / "mask" / "orphan.png")
    assert_one_problem_naming(root, root / "mask" / "orphan.png", "without sample")


def test_csv_missing_file(tmp_path):
    root = make_folder(tmp_path / "ds")
    with open(root / "pairs.csv", "w", newline="") as handle:
        handle.write("template,sample,mask,split\ntemplate/a.png,sample/zz.png,mask/a.png,train\n")
    assert_one_problem_naming(root, root / "sample" / "zz.png", "missing counterpart")


def test_template_sample_size_mismatch(tmp_path):
    root = make_folder(tmp_path / "ds")
    Image.fromarray(_image(size=(40, 32))).save(root / "template" / "a.png")
    assert_one_problem_naming(root, root / "sample" / "a.png", "differs from its template")


def test_mask_size_mismatch(tmp_path):
    root = make_folder(tmp_path / "ds")
    Image.fromarray(_mask(size=(16, 16))).save(root / "mask" / "a.png")
    assert_one_problem_naming(root, root / "mask" / "a.png", "mask size")


def test_truncated_image(tmp_path):
    root = make_folder(tmp_path / "ds")
    path = root / "sample" / "a.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_one_problem_naming(root, path, "corrupt or truncated")


def test_unreadable_image(tmp_path):
    root = make_folder(tmp_path / "ds")
    path = root / "template" / "b.png"
    path.write_bytes(b"this is not an image")
    assert_one_problem_naming(root, path, "cannot be read")


def test_rgba_image(tmp_path):
    root = make_folder(tmp_path / "ds")
    path = root / "sample" / "a.png"
    Image.fromarray(np.zeros((32, 32, 4), np.uint8)).save(path)
    assert_one_problem_naming(root, path, "alpha", "convert('RGB')")


def test_sixteen_bit_image(tmp_path):
    root = make_folder(tmp_path / "ds")
    path = root / "sample" / "a.png"
    Image.fromarray(np.full((32, 32), 40000, np.uint16)).save(path)
    assert_one_problem_naming(root, path, "16-bit", "8-bit")


def test_palette_image(tmp_path):
    root = make_folder(tmp_path / "ds")
    path = root / "template" / "a.png"
    Image.fromarray(_image()).convert("P").save(path)
    assert_one_problem_naming(root, path, "palette")


def test_non_binary_mask(tmp_path):
    root = make_folder(tmp_path / "ds")
    mask = _mask()
    mask[0, 0] = 128
    path = root / "mask" / "a.png"
    Image.fromarray(mask).save(path)
    assert_one_problem_naming(root, path, "binary mask has values", "128")


def test_class_id_out_of_range(tmp_path):
    root = make_folder(tmp_path / "ds")
    (root / "classes.json").write_text(json.dumps(["background", "scratch", "dent"]))
    mask = np.zeros((32, 32), np.uint8)
    mask[4:8, 4:8] = 2
    mask[20:24, 20:24] = 5
    for name in "abc":
        Image.fromarray(mask).save(root / "mask" / f"{name}.png")
    assert_one_problem_naming(root, root / "mask" / "a.png", "class id 5", "out of range")


def test_multiclass_mask_keeps_class_ids(tmp_path):
    root = make_folder(tmp_path / "ds")
    (root / "classes.json").write_text(json.dumps(["background", "scratch", "dent"]))
    mask = np.zeros((32, 32), np.uint8)
    mask[4:8, 4:8] = 2
    for name in "abc":
        Image.fromarray(mask).save(root / "mask" / f"{name}.png")
    item = PairDataset(root)[0]
    assert PairDataset(root).num_classes == 3
    assert int((item["mask"] == 2).sum()) == 16


def test_empty_folder(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    summary, problems = check_dataset(root)
    assert len(problems) == 1 and str(root) in problems[0] and "empty folder" in problems[0]
    with pytest.raises(DataError, match="empty folder"):
        PairDataset(root)


def test_empty_sample_subfolder(tmp_path):
    root = make_folder(tmp_path / "ds")
    for path in (root / "sample").iterdir():
        path.unlink()
    problems = problems_of(root)
    assert any(str(root / "sample") in p and "empty folder" in p for p in problems)


def test_duplicate_names(tmp_path):
    root = make_folder(tmp_path / "ds")
    Image.fromarray(_image()).save(root / "sample" / "a.jpg")
    assert_one_problem_naming(root, root / "sample" / "a.png", "duplicate name")


def test_duplicate_rows_in_csv(tmp_path):
    root = make_folder(tmp_path / "ds")
    with open(root / "pairs.csv", "w", newline="") as handle:
        handle.write("template,sample,mask,split\n")
        handle.write("template/a.png,sample/a.png,mask/a.png,train\n" * 2)
    problems = problems_of(root)
    assert any("duplicate sample sample/a.png" in p and "pairs.csv:3" in p for p in problems)


def test_csv_missing_column(tmp_path):
    root = make_folder(tmp_path / "ds")
    (root / "pairs.csv").write_text("template,sample\ntemplate/a.png,sample/a.png\n")
    problems = problems_of(root)
    assert len(problems) == 1 and "pairs.csv" in problems[0] and "mask" in problems[0]


def test_bad_split_value(tmp_path):
    root = make_folder(tmp_path / "ds")
    (root / "pairs.csv").write_text(
        "template,sample,mask,split\ntemplate/a.png,sample/a.png,mask/a.png,training\n")
    problems = problems_of(root)
    assert any("'training'" in p for p in problems)


def test_cli_check_exit_codes(tmp_path, capsys):
    root = make_folder(tmp_path / "ds")
    assert cli_main(["data", "check", str(root)]) == 0
    assert "3 pairs" in capsys.readouterr().out
    (root / "mask" / "b.png").unlink()
    Image.fromarray(np.zeros((32, 32, 4), np.uint8)).save(root / "sample" / "c.png")
    assert cli_main(["data", "check", str(root)]) != 0
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert any(str(root / "sample" / "b.png") in line for line in err_lines)
    assert any(str(root / "sample" / "c.png") in line for line in err_lines)


def test_writer_leaves_nothing_half_written(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with DatasetWriter(out) as writer:
            writer.add_image("template/a.png", _image())
            raise RuntimeError("generator failed half-way")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_augment_flips_keep_correspondence(tmp_path):
    root = tmp_path / "ds"
    template = np.zeros((32, 32), np.uint8)
    template[4:8, 20:28] = 255
    sample = np.roll(template, 4, axis=1)  # content moved right by 4 px
    mask = np.zeros((32, 32), np.uint8)
    identity_x = (np.arange(8) + 0.5) * 4 - 0.5
    flow = np.stack(np.meshgrid(identity_x, identity_x, indexing="xy")).astype(np.float32)
    flow[0] -= 4  # sample pixel x came from template x - 4
    with DatasetWriter(root) as writer:
        writer.add_image("t.png", template)
        writer.add_image("s.png", sample)
        writer.add_image("m.png", mask)
        writer.add_flow("f.npy", flow)
        writer.add_row(template="t.png", sample="s.png", mask="m.png", split="train",
                       flow="f.npy")
    dataset = PairDataset(root, augment=Augment(hflip=1.0, vflip=0.0, brightness=0, contrast=0))
    item = dataset[0]
    template_t, sample_t, flow_t = item["template"][0], item["sample"][0], item["flow"]
    checked = 0
    # the flipped sample pixel at a cell centre equals the flipped template at the flow target
    for j in range(8):
        for i in range(8):
            # cell centres sit at 4i + 1.5; blocks are 4-px aligned, so floor is a safe pick
            x, y = int((i + 0.5) * 4 - 0.5), int((j + 0.5) * 4 - 0.5)
            tx, ty = math.floor(flow_t[0, j, i]), math.floor(flow_t[1, j, i])
            if 0 <= tx < 32:
                checked += 1
                assert sample_t[y, x] == template_t[ty, tx]
    assert checked >= 56


def test_split_column_selects_the_in_batch_split(tmp_path):
    root = make_folder(tmp_path / "ds")
    with open(root / "pairs.csv", "w", newline="") as handle:
        handle.write("template,sample,mask,split,split_inbatch\n")
        handle.write("template/a.png,sample/a.png,mask/a.png,test,train\n")
        handle.write("template/b.png,sample/b.png,mask/b.png,train,test\n")
    assert [i["meta"]["name"] for i in PairDataset(root, "test")] == ["a"]
    inbatch = PairDataset(root, "test", split_column="split_inbatch")
    assert [i["meta"]["name"] for i in inbatch] == ["b"]
    with pytest.raises(DataError, match="no column"):
        PairDataset(root, "test", split_column="nope")


def _synth_like_folder(root):
    """Two pairs with a flow file each, written with PIL and numpy only."""
    root.mkdir(parents=True)
    rows = ["template,sample,mask,split,flow"]
    centres = (np.arange(8) + 0.5) * 4 - 0.5
    for index in range(2):
        Image.fromarray(_image(seed=index)).save(root / f"t{index}.png")
        Image.fromarray(_image(seed=10 + index)).save(root / f"s{index}.png")
        Image.fromarray(_mask()).save(root / f"m{index}.png")
        flow = np.stack(np.meshgrid(centres + index, centres, indexing="xy")).astype(np.float16)
        flow[:, 0, 0] = np.nan
        np.save(root / f"f{index}.npy", flow)
        rows.append(f"t{index}.png,s{index}.png,m{index}.png,train,f{index}.npy")
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    return root


def test_item_decodes_each_file_once(tmp_path, monkeypatch):
    """Every image is opened by PIL and every flow loaded by numpy exactly once per item,
    wherever in the package that happens (the library entry points are wrapped)."""
    root = _synth_like_folder(tmp_path / "ds")
    dataset = PairDataset(root)
    opened = []
    real_open, real_load = Image.open, np.load

    def counting_open(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real_open(path, *args, **kwargs)

    def counting_load(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    monkeypatch.setattr(np, "load", counting_load)
    assert len(PairDataset(root)) == 2 and opened == []  # opening a dataset decodes nothing
    for index in range(len(dataset)):
        opened.clear()
        dataset[index]
        assert sorted(opened) == [f"f{index}.npy", f"m{index}.png", f"s{index}.png",
                                  f"t{index}.png"], opened


def test_item_equals_a_plain_pil_numpy_decode(tmp_path):
    root = _synth_like_folder(tmp_path / "ds")
    item = PairDataset(root)[1]
    template = np.asarray(Image.open(root / "t1.png"), np.float32) / 255
    sample = np.asarray(Image.open(root / "s1.png"), np.float32) / 255
    mask = np.asarray(Image.open(root / "m1.png")) > 0
    flow = np.load(root / "f1.npy").astype(np.float32)  # stored at the item's stride 4
    assert np.array_equal(item["template"].numpy(), template.transpose(2, 0, 1))
    assert np.array_equal(item["sample"].numpy(), sample.transpose(2, 0, 1))
    assert np.array_equal(item["mask"].numpy(), mask.astype(np.int64))
    assert np.array_equal(item["flow"].numpy(), flow, equal_nan=True)


def test_item_refuses_a_bad_file_with_the_validators_message(tmp_path):
    root = _synth_like_folder(tmp_path / "ds")
    mask = _mask()
    mask[0, 0] = 7
    Image.fromarray(mask).save(root / "m0.png")
    problems = problems_of(root)
    assert len(problems) == 1
    dataset = PairDataset(root)  # opening does not decode, so it does not refuse yet
    with pytest.raises(DataError) as error:
        dataset[0]
    assert str(error.value) == problems[0]
    dataset[1]  # the other pair is fine


@pytest.mark.parametrize("escaping", ["../outside.png", "sample/../../outside.png",
                                      "/etc/passwd", "C:\\images\\a.png", ".."])
def test_csv_paths_must_stay_inside_the_folder(tmp_path, escaping):
    root = make_folder(tmp_path / "ds")
    Image.fromarray(_image(seed=3)).save(tmp_path / "outside.png")  # exists, yet refused
    with open(root / "pairs.csv", "w", newline="") as handle:
        handle.write("template,sample,mask,split\n"
                     "template/a.png,sample/a.png,mask/a.png,train\n"
                     f"{escaping},sample/b.png,mask/b.png,train\n")
    problems = problems_of(root)
    assert len(problems) == 1
    assert "pairs.csv:3" in problems[0] and "outside the dataset folder" in problems[0]
    assert escaping in problems[0]
    with pytest.raises(DataError, match="outside the dataset folder"):
        list_pairs(root)


def test_a_path_that_climbs_back_inside_is_accepted(tmp_path):
    root = make_folder(tmp_path / "ds")
    with open(root / "pairs.csv", "w", newline="") as handle:
        handle.write("template,sample,mask,split\n"
                     "sample/../template/a.png,sample/a.png,mask/a.png,train\n")
    table, problems = list_pairs(root)
    assert problems == [] and len(table.records) == 1


def test_csv_with_a_byte_order_mark(tmp_path):
    root = make_folder(tmp_path / "ds")
    (root / "pairs.csv").write_bytes("\ufefftemplate,sample,mask,split\n"
                                     "template/a.png,sample/a.png,mask/a.png,val\n"
                                     .encode("utf-8"))
    table, problems = list_pairs(root)
    assert problems == [] and table.records[0].split == "val"


def test_exif_orientation_is_applied(tmp_path):
    upright = _image(size=(20, 30), seed=4)  # 20 rows, 30 columns
    path = tmp_path / "phone.png"
    stored = Image.fromarray(np.rot90(upright, k=1).copy())  # stored turned anticlockwise ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... with "rotate 90 degrees clockwise to display" (orientation 6)
    stored.save(path, exif=exif)
    assert np.array_equal(read_image(path), upright)


def test_decompression_bomb_names_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.fromarray(_image(size=(64, 64))).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 = 4096 > 2 x 1000
    with pytest.raises(DataError, match="huge.png: larger than Pillow's safety limit"):
        read_image(path)
