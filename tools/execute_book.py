"""Re-execute every chapter of the book in place, widget state included (``make book PROFILE=``).

Usage: ``python tools/execute_book.py BOOK_DIR [--toc _toc.yml] [--timeout SECONDS]``

The chapters are the ``.ipynb`` files ``_toc.yml`` lists (looked up in BOOK_DIR, then its
parent), in order, that lie under BOOK_DIR.  Each runs with nbclient on the ``python3`` kernel in
its own folder, with the caller's environment (so ``BGNET_PROFILE`` picks the profile;
``BGNET_HOME`` defaults to the repository root, where data/ and runs/ are cached) and the
repository root on ``PYTHONPATH``.  Widget state is stored in the notebook so the static book can
replay chapter 8's widgets without a kernel.  A notebook is rewritten atomically and only if every
cell ran; the wall time per chapter is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO_ROOT = Path(__file__).resolve().parent.parent


def toc_files(toc_path: Path) -> list[Path]:
    """The files _toc.yml lists (root first, then parts/chapters/sections in order)."""
    toc = yaml.safe_load(toc_path.read_text())
    if not isinstance(toc, dict) or "root" not in toc:
        raise SystemExit(f"{toc_path}: not a Jupyter Book _toc.yml (no 'root' entry)")
    names = [toc["root"]]

    def walk(entries: list) -> None:
        for entry in entries or []:
            if "file" in entry:
                names.append(entry["file"])
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key))

    walk([{key: toc[key]} for key in ("parts", "chapters", "sections") if key in toc])
    return [toc_path.parent / name for name in names]


def find_toc(book_dir: Path) -> Path:
    for candidate in (book_dir / "_toc.yml", book_dir.parent / "_toc.yml"):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"no _toc.yml in {book_dir} or {book_dir.parent}")


def execute_notebook(path: Path, timeout: int) -> float:
    """Run one notebook in its folder and rewrite it atomically; returns the wall time (s)."""
    notebook = nbformat.read(path, as_version=4)
    notebook.metadata.pop("widgets", None)  # nbclient keeps stale state if no widget is made
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=timeout,
        store_widget_state=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, path.stat().st_mode & 0o777)  # mkstemp's 0600 would hide it from others
        nbformat.write(notebook, tmp)
        os.replace(tmp, path)
    except BaseException:
        os.remove(tmp)
        raise
    return seconds


def shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if REPO_ROOT in path.parents else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("book_dir", type=Path)
    parser.add_argument("--toc", type=Path, help="default: BOOK_DIR/_toc.yml or ../_toc.yml")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--only", nargs="+", default=None,
                        help="chapter file names (e.g. 06_network_and_loss) to execute")
    args = parser.parse_args(argv)
    book_dir = args.book_dir.resolve()
    toc = args.toc.resolve() if args.toc else find_toc(book_dir)
    chapters, missing = [], []
    for entry in toc_files(toc):
        if book_dir not in entry.parents:
            continue
        notebook = entry if entry.suffix == ".ipynb" else entry.with_suffix(".ipynb")
        if notebook.is_file():
            chapters.append(notebook)
        elif not (entry.is_file() or entry.with_suffix(".md").is_file()):
            missing.append(entry)  # markdown chapters have nothing to execute
    if missing:
        raise SystemExit(f"{toc} lists chapters that do not exist: "
                         f"{', '.join(map(str, missing))}")
    if args.only:
        unknown = set(args.only) - {chapter.stem for chapter in chapters}
        if unknown:
            raise SystemExit(f"--only: no chapter {', '.join(sorted(unknown))} in {toc}")
        chapters = [chapter for chapter in chapters if chapter.stem in args.only]
    # the kernel imports bgnet_lite from this checkout even where it is not pip-installed
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    # one data and run cache for every chapter: the repository's (git-ignored) data/ and runs/
    os.environ.setdefault("BGNET_HOME", str(REPO_ROOT))
    profile = os.environ.get("BGNET_PROFILE", "cpu (default)")
    print(f"executing {len(chapters)} chapters, BGNET_PROFILE={profile}", flush=True)
    total = 0.0
    for path in chapters:
        try:
            seconds = execute_notebook(path, args.timeout)
        except CellExecutionError as error:
            print(f"FAILED {shown(path)} (left unchanged):\n{error}",
                  file=sys.stderr)
            return 1
        total += seconds
        print(f"{seconds:8.1f} s  {shown(path)}", flush=True)
    print(f"{total:8.1f} s  total", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
