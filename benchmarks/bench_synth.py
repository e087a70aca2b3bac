"""Time the synthetic OCD-like dataset generation (chapter 1, "The problem").

Usage: python benchmarks/bench_synth.py [--pairs 918] [--size 256] [--workers N]

Writes the dataset into a temporary folder (deleted afterwards) and prints one table row:
pairs, size, workers, seconds, pairs/s, MB on disk.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bgnet_lite.data.synth import SynthConfig, write_synth_dataset


def folder_megabytes(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=918)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="default: write_synth_dataset's")
    args = parser.parse_args()

    config = SynthConfig(pairs=args.pairs, size=args.size, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        out = write_synth_dataset(Path(tmp) / "synth", config, progress=False, workers=args.workers)
        seconds = time.perf_counter() - start
        megabytes = folder_megabytes(out)
    workers = "auto" if args.workers is None else str(args.workers)
    print(
        f"| {'pairs':>5} | {'size':>4} | {'workers':>7} | {'seconds':>7} | {'pairs/s':>7} | "
        f"{'MB':>6} |"
    )
    print(f"|{'-' * 7}|{'-' * 6}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 8}|")
    print(
        f"| {config.pairs:>5} | {config.size:>4} | {workers:>7} | {seconds:>7.1f} | "
        f"{config.pairs / seconds:>7.1f} | {megabytes:>6.1f} |"
    )


if __name__ == "__main__":
    main()
