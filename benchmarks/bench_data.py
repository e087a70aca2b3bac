"""Time loading dataset items: ms per ``PairDataset[i]`` (chapter 1, "The problem").

Usage: python benchmarks/bench_data.py [--pairs 24] [--size 256] [--repeats 3] [--threads 1]

Writes a small OCD-like dataset into a temporary folder (deleted afterwards) and prints one
table row per setting: the item at its stored size, resized to half, with augmentation, and the
floor: decoding the item's three PNGs and its flow once with nothing else.  Torch runs on one
thread by default, as in a DataLoader worker.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bgnet_lite.data.folder import Augment, PairDataset
from bgnet_lite.data.io import load_flow, read_image
from bgnet_lite.data.synth import SynthConfig, write_synth_dataset


def ms_per_item(load, count: int, repeats: int) -> float:
    """Best of ``repeats`` passes over ``count`` items (the OS file cache is warm after the
    first), in milliseconds per item."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for index in range(count):
            load(index)
        best = min(best, (time.perf_counter() - start) / count)
    return 1000 * best


def decode_only(dataset: PairDataset):
    def load(index):
        record = dataset.records[index]
        sample = read_image(record.sample)
        read_image(record.template)
        read_image(record.mask, kind="mask")
        load_flow(record.flow, sample.shape[:2])

    return load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = SynthConfig(pairs=args.pairs, size=args.size, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synth_dataset(Path(tmp) / "synth", config, progress=False)
        full = PairDataset(root)
        settings = [
            (f"item {args.size}^2", full.__getitem__),
            (f"item resized to {args.size // 2}^2", PairDataset(root, size=args.size // 2)
             .__getitem__),
            (f"item {args.size}^2 + augment", PairDataset(root, augment=Augment()).__getitem__),
            ("decode 3 PNGs + flow only", decode_only(full)),
        ]
        rows = [(name, ms_per_item(load, len(full), args.repeats)) for name, load in settings]
    width = max(len(name) for name, _ in rows)
    print(f"{len(full)} pairs, torch threads {torch.get_num_threads()}")
    print(f"| {'setting':<{width}} | {'ms/item':>7} |")
    print(f"|{'-' * (width + 2)}|{'-' * 9}|")
    for name, ms in rows:
        print(f"| {name:<{width}} | {ms:>7.2f} |")


if __name__ == "__main__":
    main()
