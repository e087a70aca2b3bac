"""Dataset folders of template/sample/mask triplets: listing, validation, and the torch Dataset
shared by every source (chapter 1, "The problem").

Two layouts are accepted (see ``bgnet_lite/data/io.py`` for the file conventions):

* a folder with ``pairs.csv`` (columns at least ``template,sample,mask``; ``split`` optional; one
  template may serve many samples; extra columns such as ``batch``, ``defect``, ``flow`` kept);
* a folder with ``template/``, ``sample/`` and ``mask/`` holding files with matching names
  (``mask/`` may be absent for prediction).  A single image in ``template/`` serves all.

Masks are binary (0/255, or 0/1) unless the folder has ``classes.json`` (a JSON list of class names,
background first), in which case mask pixels hold class ids ``0 .. K-1``.
Without a ``split`` column a deterministic split is made from a hash of the sample's path.

Modules: ``table`` (listing, class names, splits), ``check`` (decoding and checking triplets)
and ``dataset`` (the torch Dataset, augmentation, collation).
"""

from .check import PairArrays, check_dataset, check_pair, read_pair, require_valid_dataset
from .dataset import Augment, PairDataset, collate_pairs
from .table import (
    IMAGE_SUFFIXES,
    PairRecord,
    PairTable,
    deterministic_split,
    list_pairs,
    read_class_names,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "Augment",
    "PairArrays",
    "PairDataset",
    "PairRecord",
    "PairTable",
    "check_dataset",
    "require_valid_dataset",
    "check_pair",
    "collate_pairs",
    "deterministic_split",
    "list_pairs",
    "read_class_names",
    "read_pair",
]
