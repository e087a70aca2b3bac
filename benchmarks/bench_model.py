"""CPU forward time and parameter size of the ablation variants S1-S5 (chapter 6).

Usage: ``python benchmarks/bench_model.py [--sizes 128 256 512] [--repeats 5] [--threads N]``

Prints, per variant, the median wall-clock time of ``repeats`` forward passes (batch 1,
``torch.no_grad``, eval mode, after one warm-up pass) at each square image size, the ratio
S5 / S2 (the cost of attention + matching over the plain Siamese network; goal <= 1.3 at 256),
and the parameter size in MiB (float32) next to the paper's 47.70 MB for BGNet (Table 3).
Timings depend on the machine and on other load; they are not a test.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from bgnet_lite.model.bgnet import VARIANTS, BGNet, BGNetConfig, parameter_size_mb

PAPER_BGNET_MB = 47.70  # Table 3 of the paper, unit "MB" undefined there


def median_forward_seconds(model: BGNet, size: int, repeats: int) -> float:
    """Median seconds of one no-grad forward pass on a random [1, 3, size, size] pair."""
    generator = torch.Generator().manual_seed(0)
    template = torch.rand(1, 3, size, size, generator=generator)
    sample = torch.rand(1, 3, size, size, generator=generator)
    timings = []
    with torch.no_grad():
        model(template, sample)  # warm-up: allocator and kernel selection
        for _ in range(repeats):
            start = time.perf_counter()
            model(template, sample)
            timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads; batch 1, no grad, eval, median of {args.repeats}"
    )
    seconds: dict[str, dict[int, float]] = {}
    sizes_mib: dict[str, float] = {}
    for variant in VARIANTS:
        torch.manual_seed(0)
        model = BGNet(BGNetConfig.from_variant(variant, weights="none")).eval()
        sizes_mib[variant] = parameter_size_mb(model)
        seconds[variant] = {
            size: median_forward_seconds(model, size, args.repeats) for size in args.sizes
        }

    header = "variant | " + " | ".join(f"{size}² ms" for size in args.sizes)
    header += " | params (M) | size (MiB)"
    print(header)
    print("-" * len(header))
    for variant in VARIANTS:
        model_params = sizes_mib[variant] * 2**20 / 4 / 1e6
        cells = " | ".join(f"{seconds[variant][size] * 1e3:8.1f}" for size in args.sizes)
        print(f"{variant:7s} | {cells} | {model_params:10.2f} | {sizes_mib[variant]:9.2f}")
    ratios = " | ".join(
        f"{size}²: {seconds['S5'][size] / seconds['S2'][size]:.2f}" for size in args.sizes
    )
    print(f"S5 / S2 time ratio: {ratios}   (goal <= 1.3 at 256²)")
    print(
        f"S5 (BGNet) parameter size {sizes_mib['S5']:.2f} MiB vs paper {PAPER_BGNET_MB} MB "
        "(Table 3)"
    )


if __name__ == "__main__":
    main()
