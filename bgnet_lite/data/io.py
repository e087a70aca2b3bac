"""Reading and writing the one on-disk dataset format (chapter 1, "The problem").

A dataset is a folder with ``pairs.csv`` whose columns are at least
``template,sample,mask,split`` (paths relative to the folder).  Binary masks are 0/255 PNG,
multi-class masks are PNG holding the class id.  An optional ``flow`` column names a ``.npy``
file, float16/float32 ``[2, H', W']`` where ``H' = H / s`` for an integer ``s >= 1``: entry
``[:, j, i]`` is the (x, y) template pixel coordinate (full-resolution pixels, pixel centres at
integers) of the background point seen at the sample pixel centre
``((i + 0.5) * s - 0.5, (j + 0.5) * s - 0.5)``; NaN where the sample shows no template
background.

Every writer here is atomic: files go to a temporary name and are renamed when complete, and a
whole dataset is built in a temporary folder that is renamed to its final name at the end.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

REQUIRED_COLUMNS = ("template", "sample", "mask", "split")
SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """Bad input: the message names the file and says what to do (chapter 1)."""


def atomic_write_bytes(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` and rename the result onto ``path`` only if it succeeded
    (chapter 1)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 ``[H, W]`` or ``[H, W, 3]`` array as PNG, atomically (chapter 1)."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"{path}: PNG data must be uint8, got {array.dtype}")
    image = Image.fromarray(array)
    atomic_write_bytes(path, lambda tmp: image.save(tmp, format="PNG"))


def save_flow(path: str | os.PathLike, flow: np.ndarray) -> None:
    """Write a ``[2, H, W]`` correspondence field as float16 ``.npy``, atomically (chapter 1)."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"{path}: flow must be [2, H, W], got {flow.shape}")

    def write(tmp):
        with open(tmp, "wb") as handle:
            np.save(handle, flow.astype(np.float16))

    atomic_write_bytes(path, write)


def read_image(path: str | os.PathLike, *, kind: str = "image") -> np.ndarray:
    """Read an 8-bit greyscale or RGB image as uint8 ``[H, W]`` or ``[H, W, 3]`` (chapter 1).

    ``kind`` is ``"image"`` (template/sample) or ``"mask"``.  Anything else a user might have
    (RGBA, 16-bit, palette, truncated files) is refused with a message saying how to fix it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with Image.open(path) as opened:
            # a phone photo stores "rotate me" in EXIF; apply it so sizes and pixels match
            image = ImageOps.exif_transpose(opened)
            mode = image.mode
            image.load()
            if mode == "RGBA" or mode == "LA" or "transparency" in image.info:
                raise DataError(
                    f"{path}: has an alpha channel ({mode}); save it as RGB or greyscale "
                    "without transparency (e.g. PIL: Image.open(p).convert('RGB').save(p))"
                )
            if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                raise DataError(
                    f"{path}: is a {mode} ({'16' if '16' in mode else '32'}-bit) image; "
                    "bgnet-lite reads 8-bit images: rescale to 0-255 and save as 8-bit PNG"
                )
            if mode == "P":
                raise DataError(
                    f"{path}: is a palette (mode P) image; its pixel values are palette "
                    "indices, not intensities. Convert it with Image.open(p).convert('RGB') "
                    "for an image or .convert('L') for a mask and save it again"
                )
            if mode == "1":
                image = image.convert("L")
            elif mode not in ("L", "RGB"):
                raise DataError(
                    f"{path}: unsupported image mode {mode}; save it as 8-bit greyscale or RGB"
                )
            array = np.array(image)
    except DataError:
        raise
    except Image.DecompressionBombError as error:
        raise DataError(
            f"{path}: larger than Pillow's safety limit of {Image.MAX_IMAGE_PIXELS} pixels "
            f"({error}); downscale it, or if the file is trusted raise the limit before "
            "reading (PIL.Image.MAX_IMAGE_PIXELS = None)"
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataError(
            f"{path}: cannot be read as an image ({error}); the file is corrupt or truncated: "
            "export it again"
        ) from error
    if kind == "mask" and array.ndim == 3:
        if not (np.array_equal(array[..., 0], array[..., 1])
                and np.array_equal(array[..., 0], array[..., 2])):
            raise DataError(
                f"{path}: mask is a colour image; masks must be single-channel "
                "(0/255 for binary, class ids for multi-class)"
            )
        array = array[..., 0]
    return array


def load_flow(path: str | os.PathLike, image_hw: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Read a flow ``.npy`` and return it as float32 with its downsampling factor ``s``
    (chapter 1)."""
    path = Path(path)
    try:
        flow = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot be read as a .npy array ({error})") from error
    if flow.dtype not in (np.float16, np.float32) or flow.ndim != 3 or flow.shape[0] != 2:
        raise DataError(
            f"{path}: flow must be float16/float32 [2, H, W], got {flow.dtype} {flow.shape}"
        )
    height, width = image_hw
    stride = height // flow.shape[1] if flow.shape[1] else 0
    if stride < 1 or flow.shape[1] * stride != height or flow.shape[2] * stride != width:
        raise DataError(
            f"{path}: flow grid {flow.shape[1]}x{flow.shape[2]} is not the image size "
            f"{height}x{width} divided by a whole number"
        )
    return flow.astype(np.float32), stride


# written into every dataset folder DatasetWriter builds: what --overwrite may replace
DATASET_MARKER = ".bgnet-lite-dataset"


class DatasetWriter:
    """Build a dataset folder atomically (chapter 1): everything goes to a temporary sibling
    folder that is renamed to ``out_dir`` by :meth:`close`; on error it is removed.

    Use as a context manager::

        with DatasetWriter(out) as writer:
            writer.add_image("template/b0.png", template)
            writer.add_row(template="template/b0.png", sample=..., mask=..., split="train")
    """

    def __init__(self, out_dir: str | os.PathLike, *, overwrite: bool = False):
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise DataError(f"{self.out_dir}: exists and is a file, not a folder; choose "
                            "another output folder")
        if self.out_dir.is_dir() and any(self.out_dir.iterdir()):
            if not overwrite:
                raise DataError(
                    f"{self.out_dir}: exists and is not empty; choose a new folder or pass "
                    "--overwrite"
                )
            if not (self.out_dir / DATASET_MARKER).is_file():
                # --overwrite replaces a dataset this tool wrote, never a folder of something
                # else (a reader's own dataset included)
                raise DataError(
                    f"{self.out_dir}: not a dataset folder bgnet-lite wrote (no {DATASET_MARKER}"
                    " marker), so --overwrite will not delete it; choose another folder or "
                    "empty this one yourself"
                )
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = Path(
            tempfile.mkdtemp(prefix=f".{self.out_dir.name}.", suffix=".part",
                             dir=self.out_dir.parent)
        )
        self.rows: list[dict] = []
        self.columns: list[str] = list(REQUIRED_COLUMNS)

    def path(self, relpath: str) -> Path:
        target = self.tmp_dir / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def add_image(self, relpath: str, array: np.ndarray) -> str:
        save_png(self.path(relpath), array)
        return relpath

    def add_flow(self, relpath: str, flow: np.ndarray) -> str:
        save_flow(self.path(relpath), flow)
        return relpath

    def add_file(self, relpath: str, write) -> str:
        """Write an extra file with ``write(path)`` (e.g. a README or stats JSON)."""
        write(self.path(relpath))
        return relpath

    def add_row(self, **row) -> None:
        for key in row:
            if key not in self.columns:
                self.columns.append(key)
        self.rows.append(row)

    def close(self) -> Path:
        with open(self.tmp_dir / "pairs.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, restval="")
            writer.writeheader()
            writer.writerows(self.rows)
        (self.tmp_dir / DATASET_MARKER).write_text(
            '{"written_by": "bgnet-lite", "note": "data synth / data deeppcb --overwrite may '
            'replace this folder"}\n')
        if self.out_dir.exists():
            shutil.rmtree(self.out_dir)
        os.replace(self.tmp_dir, self.out_dir)
        return self.out_dir

    def abort(self) -> None:
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
