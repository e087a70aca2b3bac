"""Every bad dataset a reader may hand to the CLI (chapter 10): `train` and `predict` refuse
before writing anything, exit with status 2, and name the file at fault.  One case per row of
CASES; each builds a small valid folder and breaks one thing in it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgnet_lite.cli import main as cli_main


def _image(size=(32, 32), seed=0, channels=3):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (*size, channels) if channels > 1 else size, dtype=np.uint8)


def _mask(size=(32, 32), value=255):
    mask = np.zeros(size, np.uint8)
    mask[8:16, 8:16] = value
    return mask


def make_folder(root: Path, names=("a", "b", "c", "d", "e", "f")) -> Path:
    for sub in ("template", "sample", "mask"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(_image(seed=i)).save(root / "template" / f"{name}.png")
        Image.fromarray(_image(seed=10 + i)).save(root / "sample" / f"{name}.png")
        Image.fromarray(_mask()).save(root / "mask" / f"{name}.png")
    return root


def _csv(root: Path, rows: list[str], header="template,sample,mask,split") -> None:
    (root / "pairs.csv").write_text("\n".join([header, *rows]) + "\n")


def _splits_csv(root: Path, bad: dict[str, str] | None = None) -> None:
    """pairs.csv with a, b, c, d in train, e in val, f in test; ``bad`` replaces a cell."""
    splits = dict(zip("abcdef", ["train"] * 4 + ["val", "test"], strict=True))
    rows = []
    for name, split in splits.items():
        row = [f"template/{name}.png", f"sample/{name}.png", f"mask/{name}.png", split]
        for index, column in enumerate(("template", "sample", "mask")):
            if bad and bad.get("name") == name and bad.get("column") == column:
                row[index] = bad["value"]
        rows.append(",".join(row))
    _csv(root, rows)


# each case: (id, how to break the folder -> the path the message must name, commands)
def size_mismatch(root):
    Image.fromarray(_image(size=(40, 32))).save(root / "template" / "a.png")
    return root / "sample" / "a.png"


def mask_size(root):
    Image.fromarray(_mask(size=(16, 16))).save(root / "mask" / "b.png")
    return root / "mask" / "b.png"


def truncated(root):
    path = root / "sample" / "c.png"
    path.write_bytes(path.read_bytes()[:200])
    return path


def text_named_png(root):
    path = root / "template" / "d.png"
    path.write_text("not an image")
    return path


def zero_bytes(root):
    path = root / "sample" / "e.png"
    path.write_bytes(b"")
    return path


def rgba(root):
    path = root / "sample" / "a.png"
    Image.fromarray(_image(channels=4)).save(path)
    return path


def sixteen_bit(root):
    path = root / "template" / "b.png"
    Image.fromarray(np.full((32, 32), 40000, np.uint16)).save(path)
    return path


def palette(root):
    path = root / "sample" / "b.png"
    Image.fromarray(_image()).convert("P").save(path)
    return path


def non_binary_mask(root):
    path = root / "mask" / "c.png"
    mask = _mask()
    mask[0, 0] = 128
    Image.fromarray(mask).save(path)
    return path


def class_id_outside_classes_json(root):
    (root / "classes.json").write_text(json.dumps(["background", "scratch", "dent"]))
    for name in "abcdef":
        Image.fromarray(_mask(value=2)).save(root / "mask" / f"{name}.png")
    Image.fromarray(_mask(value=5)).save(root / "mask" / "d.png")
    return root / "mask" / "d.png"


def missing_template(root):
    (root / "template" / "c.png").unlink()
    return root / "sample" / "c.png"


def missing_mask(root):
    (root / "mask" / "e.png").unlink()
    return root / "sample" / "e.png"


def mask_without_sample(root):
    (root / "sample" / "f.png").unlink()
    return root / "mask" / "f.png"


def csv_missing_file(root):
    _splits_csv(root, {"name": "b", "column": "sample", "value": "sample/zz.png"})
    return root / "sample" / "zz.png"


def csv_escaping_path(root):
    Image.fromarray(_image()).save(root.parent / "outside.png")
    _splits_csv(root, {"name": "a", "column": "template", "value": "../outside.png"})
    return "../outside.png"


def csv_absolute_path(root):
    _splits_csv(root, {"name": "a", "column": "template", "value": "/etc/passwd"})
    return "/etc/passwd"


def csv_missing_column(root):
    _csv(root, ["template/a.png,sample/a.png"], header="template,sample")
    return root / "pairs.csv"


def csv_bad_split(root):
    _csv(root, ["template/a.png,sample/a.png,mask/a.png,training"])
    return root / "pairs.csv"


def csv_duplicate_rows(root):
    _csv(root, ["template/a.png,sample/a.png,mask/a.png,train"] * 2)
    return root / "pairs.csv"


def empty_folder(root):
    for sub in ("template", "sample", "mask"):
        for path in (root / sub).iterdir():
            path.unlink()
    return root


def bad_file_in_val_only(root):
    _splits_csv(root)
    path = root / "sample" / "e.png"  # the one val pair
    path.write_bytes(path.read_bytes()[:100])
    return path


def bad_file_in_test_only(root):
    _splits_csv(root)
    path = root / "mask" / "f.png"  # the one test pair
    mask = _mask()
    mask[1, 1] = 7
    Image.fromarray(mask).save(path)
    return path


def rgb_mask_with_colours(root):
    path = root / "mask" / "a.png"
    coloured = np.zeros((32, 32, 3), np.uint8)
    coloured[8:16, 8:16] = (255, 0, 0)
    Image.fromarray(coloured).save(path)
    return path


def two_problems_at_once(root):
    Image.fromarray(_image(channels=4)).save(root / "sample" / "a.png")
    (root / "template" / "d.png").write_text("not an image")
    return root / "template" / "d.png"  # the second one must be named too


def folder_does_not_exist(root):
    for sub in ("template", "sample", "mask"):
        for path in (root / sub).iterdir():
            path.unlink()
        (root / sub).rmdir()
    root.rmdir()
    return root


CASES = [size_mismatch, mask_size, truncated, text_named_png, zero_bytes, rgba, sixteen_bit,
         palette, non_binary_mask, class_id_outside_classes_json, missing_template,
         missing_mask, mask_without_sample, csv_missing_file, csv_escaping_path,
         csv_absolute_path, csv_missing_column, csv_bad_split, csv_duplicate_rows,
         empty_folder, bad_file_in_val_only, bad_file_in_test_only, rgb_mask_with_colours,
         two_problems_at_once, folder_does_not_exist]


def _run(argv, capsys):
    status = cli_main(argv)
    return status, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
def test_train_refuses_names_the_file_and_writes_nothing(case, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BGNET_HOME", str(tmp_path / "home"))
    root = make_folder(tmp_path / "ds")
    named = case(root)
    out = tmp_path / "run"
    status, message = _run(["train", str(root), "--out", str(out), "--profile", "quick",
                            "--method", "unet"], capsys)
    assert status == 2, message
    assert message.startswith("error: ") and "Traceback" not in message
    assert str(named) in message, message
    assert not out.exists()


PREDICT_CASES = [size_mismatch, truncated, text_named_png, zero_bytes, rgba, sixteen_bit,
                 palette, missing_template, csv_escaping_path, csv_absolute_path]


@pytest.mark.parametrize("case", PREDICT_CASES, ids=[case.__name__ for case in PREDICT_CASES])
def test_predict_refuses_names_the_file_and_writes_nothing(case, tmp_path, monkeypatch, capsys,
                                                           trained_run):
    root = make_folder(tmp_path / "ds")
    named = case(root)
    out = tmp_path / "masks"
    status, message = _run(["predict", str(trained_run), str(root), str(out)], capsys)
    assert status == 2, message
    assert str(named) in message and "Traceback" not in message
    assert not out.exists()


def test_predict_needs_no_masks(tmp_path, capsys, trained_run):
    root = make_folder(tmp_path / "ds")
    for path in (root / "mask").iterdir():
        path.unlink()
    (root / "mask").rmdir()
    status, message = _run(["predict", str(trained_run), str(root), str(tmp_path / "masks")],
                           capsys)
    assert status == 0, message
    assert len(list((tmp_path / "masks" / "mask").iterdir())) == 6


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A one-step U-Net run on a valid folder, shared by the predict cases."""
    base = tmp_path_factory.mktemp("run")
    root = make_folder(base / "ds")
    _splits_csv(root)
    status = cli_main(["train", str(root), "--out", str(base / "run"), "--profile", "quick",
                       "--method", "unet", "--steps", "1", "--eval-every", "1"])
    assert status == 0
    return base / "run"
