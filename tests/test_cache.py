"""Where the chapters' datasets go (chapter 1): under ``$BGNET_HOME`` or the current directory,
looked up at call time, never in the package folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_deeppcb import write_fixture

import bgnet_lite
from bgnet_lite.data import cache
from bgnet_lite.data.folder import list_pairs
from bgnet_lite.data.synth import SynthConfig, defect_schedule

PACKAGE_DIR = Path(bgnet_lite.__file__).resolve().parent


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def package_files():
    before = files_under(PACKAGE_DIR)
    yield
    new = {p for p in files_under(PACKAGE_DIR) - before if "__pycache__" not in p.parts}
    assert not new, f"written into the package folder: {sorted(new)}"


def test_ensure_synth_writes_under_bgnet_home(tmp_path, monkeypatch, package_files):
    home = tmp_path / "home"
    monkeypatch.setenv("BGNET_HOME", str(home))  # set after import: read at call time
    monkeypatch.chdir(tmp_path)
    out = cache.ensure_synth("quick")
    # the quick profile: 48 pairs at 64 px, written as <home>/data/ocd-48-64-v1-s0
    assert out == home / "data" / "ocd-48-64-v1-s0"
    table, problems = list_pairs(out)
    assert problems == [] and len(table.records) == 48
    scheduled = [defect for _, defect in defect_schedule(SynthConfig(pairs=48, size=64))]
    assert [r.meta["defect"] for r in table.records] == scheduled
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]

    def no_regeneration(*args, **kwargs):
        raise AssertionError("an existing dataset must be reused")

    monkeypatch.setattr("bgnet_lite.data.synth.write_synth_dataset", no_regeneration)
    assert cache.ensure_synth("quick") == out


def test_without_bgnet_home_data_goes_to_the_current_directory(tmp_path, monkeypatch,
                                                                package_files):
    monkeypatch.delenv("BGNET_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    out = cache.ensure_synth("quick", variation=0.0, seed=2)
    assert out == tmp_path / "data" / "ocd-48-64-v0-s2"
    assert (out / "pairs.csv").is_file()


def test_find_deeppcb_source_order(tmp_path, monkeypatch):
    explicit = tmp_path / "mine"
    beside_home = tmp_path / "shared/datasets/deeppcb"
    beside_checkout = tmp_path / "checkout-parent/shared/datasets/deeppcb"
    for folder in (explicit, beside_home, beside_checkout):
        (folder / "PCBData").mkdir(parents=True)
    monkeypatch.setattr(cache, "REPO_ROOT", tmp_path / "checkout-parent/checkout")
    monkeypatch.setenv("BGNET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BGNET_DEEPPCB", str(explicit))
    assert cache.find_deeppcb_source() == explicit
    monkeypatch.delenv("BGNET_DEEPPCB")
    assert cache.find_deeppcb_source() == beside_home
    monkeypatch.setenv("BGNET_HOME", str(tmp_path / "elsewhere/home"))
    assert cache.find_deeppcb_source() == beside_checkout
    monkeypatch.setattr(cache, "REPO_ROOT", tmp_path / "elsewhere/checkout")
    assert cache.find_deeppcb_source() is None


def test_ensure_deeppcb_reads_the_source_and_writes_under_home(tmp_path, monkeypatch,
                                                               package_files):
    source = tmp_path / "DeepPCB"
    write_fixture(source)
    before = files_under(source)
    monkeypatch.setenv("BGNET_DEEPPCB", str(source))
    monkeypatch.setenv("BGNET_HOME", str(tmp_path / "home"))
    out = cache.ensure_deeppcb(size=64, limit=1)
    assert out == tmp_path / "home/data/deeppcb-64-l1-m0"
    assert len(list_pairs(out)[0].records) == 2
    assert files_under(source) == before  # the source is only read


def test_relative_to_home_names_no_machine_folder(tmp_path, monkeypatch):
    from bgnet_lite.paths import relative_to_home

    monkeypatch.setenv("BGNET_HOME", str(tmp_path))
    assert relative_to_home(tmp_path / "runs" / "cpu" / "S5") == "runs/cpu/S5"
    assert relative_to_home("/somewhere/else/ocd-918") == "ocd-918"
