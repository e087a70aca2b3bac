"""Chapter provenance: the first output shows profile, commit, device, date and, once the
chapter's last cell ran, its wall time (also in a notebook executed by nbclient)."""

import re
import subprocess
import time

import nbformat
import pytest
from nbclient import NotebookClient

from bgnet_lite import provenance as prov


def test_commit_matches_git():
    expected = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=prov.REPO_ROOT,
                              capture_output=True, text=True).stdout.strip() or "unknown"
    assert prov.provenance("quick")["commit"].removesuffix("-dirty") == expected


def test_commit_is_marked_dirty_only_for_uncommitted_code(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "bgnet_lite").mkdir()
    (tmp_path / "book").mkdir()
    (tmp_path / "bgnet_lite" / "model.py").write_text("A = 1\n")
    (tmp_path / "book" / "chapter.ipynb").write_text("{}\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path,
                          capture_output=True, text=True).stdout.strip()
    assert prov.git_commit(tmp_path) == head
    (tmp_path / "book" / "chapter.ipynb").write_text("{} \n")  # a notebook being executed
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "log.txt").write_text("untracked output\n")
    assert prov.git_commit(tmp_path) == head
    (tmp_path / "bgnet_lite" / "model.py").write_text("A = 2\n")
    assert prov.git_commit(tmp_path) == head + "-dirty"


def test_finish_without_show_raises(monkeypatch):
    monkeypatch.setattr(prov._ChapterClock, "started", None)
    with pytest.raises(RuntimeError, match="show_provenance"):
        prov.finish_provenance()


def test_show_then_finish_outside_jupyter_prints(capsys):
    info = prov.show_provenance("quick")
    first = capsys.readouterr().out
    assert "profile   : quick" in first and "wall time : (filled in" in first
    assert set(info) >= {"profile", "commit", "device", "date"}
    time.sleep(0.05)
    seconds = prov.finish_provenance()
    assert seconds >= 0.05
    assert re.search(r"chapter wall time: \d+\.\d s \(quick profile\)", capsys.readouterr().out)


def test_executed_notebook_stores_wall_time_in_first_output(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            "from bgnet_lite.provenance import show_provenance\nshow_provenance('quick');"),
        nbformat.v4.new_code_cell("import time\ntime.sleep(0.3)"),
        nbformat.v4.new_code_cell(
            "from bgnet_lite.provenance import finish_provenance\nfinish_provenance();"),
    ]
    NotebookClient(notebook, kernel_name="python3", timeout=120,
                   resources={"metadata": {"path": str(prov.REPO_ROOT)}}).execute()
    first = notebook.cells[0].outputs
    assert len(first) == 1
    text = first[0]["data"]["text/plain"]
    match = re.search(r"wall time : (\d+\.\d) s", text)
    assert match and float(match.group(1)) >= 0.3, text
    assert "profile   : quick" in text and "filled in" not in text
