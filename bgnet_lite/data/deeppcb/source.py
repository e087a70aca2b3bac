"""Finding, downloading and reading the DeepPCB source: split lists and annotation boxes
(chapter 1, "The problem")."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from ..io import DataError
from .config import CLASSES

ARCHIVE_URL = "https://github.com/tangsanli5201/DeepPCB/archive/refs/heads/master.zip"
ARCHIVE_TOP = "DeepPCB-master"
DEFAULT_CACHE = Path("~/.cache/bgnet-lite/deeppcb")


def find_pcbdata(source: str | os.PathLike) -> Path:
    """Return the ``PCBData`` folder inside ``source`` (or ``source`` itself) (chapter 1).

    Expected layout: ``PCBData/trainval.txt``, ``PCBData/test.txt`` and
    ``PCBData/groupG/G/Gxxx_temp.jpg`` / ``Gxxx_test.jpg`` / ``PCBData/groupG/G_not/Gxxx.txt``.
    """
    source = Path(source).expanduser()
    for candidate in (source / "PCBData", source):
        if (candidate / "trainval.txt").is_file() and (candidate / "test.txt").is_file():
            if any(candidate.glob("group*")):
                return candidate
    raise DataError(
        f"{source}: not a DeepPCB folder; expected {source}/PCBData/ (or this folder itself) "
        "holding trainval.txt, test.txt and groupG/G/Gxxx_temp.jpg, Gxxx_test.jpg, "
        "groupG/G_not/Gxxx.txt as in github.com/tangsanli5201/DeepPCB. Pass --download to "
        "fetch it, or --source pointing at a copy such as shared/datasets/deeppcb"
    )


def _safe_extract(archive: zipfile.ZipFile, target: Path) -> None:
    for member in archive.namelist():
        resolved = (target / member).resolve()
        if not str(resolved).startswith(str(target.resolve()) + os.sep):
            raise DataError(f"archive member {member!r} points outside {target}; refusing it")
    archive.extractall(target)


def download_deeppcb(cache_dir: str | os.PathLike | None = None) -> Path:
    """Download and unpack the DeepPCB repository archive; return its ``PCBData`` (chapter 1).

    The archive goes to ``cache_dir`` (default ``~/.cache/bgnet-lite/deeppcb``) as ``.part`` and
    is renamed when complete; extraction goes to a temporary folder renamed at the end, so an
    interrupted run leaves nothing half-written.  A finished download is reused.
    """
    cache = Path(cache_dir).expanduser() if cache_dir else DEFAULT_CACHE.expanduser()
    extracted = cache / ARCHIVE_TOP
    if (extracted / "PCBData" / "trainval.txt").is_file():
        return find_pcbdata(extracted)
    cache.mkdir(parents=True, exist_ok=True)
    zip_path = cache / f"{ARCHIVE_TOP}.zip"
    if not zip_path.is_file():
        part = zip_path.with_name(zip_path.name + ".part")
        try:
            with urllib.request.urlopen(ARCHIVE_URL, timeout=60) as response, \
                    open(part, "wb") as handle:
                shutil.copyfileobj(response, handle, length=1 << 20)
            os.replace(part, zip_path)
        except (urllib.error.URLError, OSError) as error:
            part.unlink(missing_ok=True)
            raise DataError(
                f"could not download {ARCHIVE_URL} ({error}); download it by hand, unzip it and "
                "pass --source pointing at the unzipped folder"
            ) from error
    tmp = Path(tempfile.mkdtemp(prefix=".extract.", suffix=".part", dir=cache))
    try:
        with zipfile.ZipFile(zip_path) as archive:
            _safe_extract(archive, tmp)
        if extracted.exists():
            shutil.rmtree(extracted)
        os.replace(tmp / ARCHIVE_TOP, extracted)
    except zipfile.BadZipFile as error:
        zip_path.unlink(missing_ok=True)
        raise DataError(f"{zip_path}: not a valid zip archive ({error}); run again") from error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return find_pcbdata(extracted)


def _read_split(pcbdata: Path, name: str) -> list[tuple[str, str]]:
    """``[(pair_stem, annotation_relpath)]`` from ``trainval.txt`` / ``test.txt``."""
    path = pcbdata / name
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].endswith(".jpg"):
            raise DataError(
                f"{path}:{number}: expected 'path/Gxxx.jpg path/Gxxx.txt', got {line!r}"
            )
        entries.append((parts[0][: -len(".jpg")], parts[1]))
    return entries


def read_boxes(path: str | os.PathLike, image_hw: tuple[int, int]) -> list[tuple[int, ...]]:
    """Read a DeepPCB annotation file: one ``x1,y1,x2,y2,type`` per line (chapter 1).

    Coordinates are inclusive pixel indices (clipped to the image); type is 1..6.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    height, width = image_hw
    boxes = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = [f for f in re.split(r"[\s,]+", line.strip()) if f]
        if not fields:
            continue
        try:
            x1, y1, x2, y2, cls = (int(f) for f in fields)
        except ValueError:
            raise DataError(
                f"{path}:{number}: expected five integers 'x1 y1 x2 y2 type', got {line!r}"
            ) from None
        if not 1 <= cls < len(CLASSES):
            raise DataError(f"{path}:{number}: defect type {cls} is not in 1..{len(CLASSES) - 1}")
        x1, x2 = sorted((min(max(x1, 0), width - 1), min(max(x2, 0), width - 1)))
        y1, y2 = sorted((min(max(y1, 0), height - 1), min(max(y2, 0), height - 1)))
        boxes.append((x1, y1, x2, y2, cls))
    return boxes


def _orphan_templates(pcbdata: Path) -> list[str]:
    orphans = []
    for template in sorted(pcbdata.glob("group*/*/*_temp.jpg")):
        if not template.with_name(template.name.replace("_temp.jpg", "_test.jpg")).is_file():
            orphans.append(str(template.relative_to(pcbdata))[: -len("_temp.jpg")])
    return orphans
