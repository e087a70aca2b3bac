"""CPU forward time and parameter size of the ablation variants S1-S5 (chapter 6).

Usage: ``python benchmarks/bench_model.py [--sizes 128 256 512] [--repeats 5] [--threads N]``

Prints, per variant, the median wall-clock time of ``repeats`` forward passes (batch 1,
``torch.no_grad``, eval mode, after one warm-up pass; the variants take turns so that load
from other processes affects all of them alike) at each square image size, the ratio
S5 / S2 (the cost of attention + matching over the plain Siamese network; goal <= 1.3 at 256),
and the parameter size in MiB (float32) next to the paper's 47.70 MB for BGNet (Table 3).
Timings depend on the machine and on other load; they are not a test. On a shared machine,
``--threads 1 --cpu-time`` gives steadier numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from bgnet_lite.methods import create_model, method_name
from bgnet_lite.methods.bgnet.config import LOFTR_WIDTHS, VARIANTS
from bgnet_lite.metrics import parameter_size_mb
from bgnet_lite.paper_results import PAPER_PARAMS_MB as PAPER_BGNET_MB

# rows: the five variants, then S5 with match_chunked (no dense L x S matrix), S5 with one
# instead of two self/cross repetitions at 1/32 (the most expensive attention block), and S5
# with LoFTR's widths (the default before the paper-size rule), and S5 with
# align_fine_scales (the similarity fit and three resampled template maps), and that plus
# local_match_px = 6 (the window search at 1/2 and 1/4)
ROWS = {
    **{variant: (variant, {}) for variant in VARIANTS},
    "S5-chunked": ("S5", {"chunked_matching": True}),
    "S5-d32=1": ("S5", {"depth_32": 1}),
    "S5-LoFTR": ("S5", LOFTR_WIDTHS),
    "S5-align": ("S5", {"align_fine_scales": True}),
    "S5-local": ("S5", {"align_fine_scales": True, "local_match_px": 6.0}),
}


def random_pair(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random [1, 3, size, size] template/sample pair."""
    generator = torch.Generator().manual_seed(0)
    shape = (1, 3, size, size)
    return torch.rand(shape, generator=generator), torch.rand(shape, generator=generator)


def forward_seconds(
    model: torch.nn.Module, template: torch.Tensor, sample: torch.Tensor, clock=time.perf_counter
) -> float:
    """Seconds of one no-grad forward pass, measured with ``clock``."""
    with torch.no_grad():
        start = clock()
        model(template, sample)
        return clock() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--cpu-time", action="store_true",
        help="measure process CPU time instead of wall-clock time; with --threads 1 this is "
        "far less sensitive to other load on a shared machine",
    )
    args = parser.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads; {'CPU' if args.cpu_time else 'wall-clock'} time, "
        f"batch 1, no grad, eval, median of {args.repeats}; "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )
    models: dict[str, torch.nn.Module] = {}
    for name in ROWS:
        torch.manual_seed(0)
        variant, overrides = ROWS[name]
        models[name] = create_model(method_name(variant), weights="none", **overrides).eval()
    sizes_mib = {name: parameter_size_mb(model) for name, model in models.items()}
    seconds: dict[str, dict[int, float]] = {name: {} for name in ROWS}
    for size in args.sizes:
        template, sample = random_pair(size)
        timings: dict[str, list[float]] = {name: [] for name in ROWS}
        for name in ROWS:  # warm-up: allocator and kernel selection
            forward_seconds(models[name], template, sample)
        # round robin, so that load from other processes hits every variant alike
        for _ in range(args.repeats):
            for name in ROWS:
                timings[name].append(forward_seconds(models[name], template, sample, clock))
        for name in ROWS:
            seconds[name][size] = statistics.median(timings[name])

    header = "variant    | " + " | ".join(f"{size}² ms" for size in args.sizes)
    header += " | params (M) | size (MiB)"
    print(header)
    print("-" * len(header))
    for name in ROWS:
        model_params = sizes_mib[name] * 2**20 / 4 / 1e6
        cells = " | ".join(f"{seconds[name][size] * 1e3:8.1f}" for size in args.sizes)
        print(f"{name:10s} | {cells} | {model_params:10.2f} | {sizes_mib[name]:9.2f}")
    for name in ("S5", "S5-LoFTR", "S5-align", "S5-local"):
        ratios = " | ".join(
            f"{size}²: {seconds[name][size] / seconds['S2'][size]:.2f}" for size in args.sizes
        )
        print(f"{name + ' / S2':<13} time ratio: {ratios}   (goal <= 1.3 at 256²)")
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    print(
        f"S5 (BGNet) parameter size {sizes_mib['S5']:.2f} MiB vs paper {PAPER_BGNET_MB} MB "
        "(Table 3)"
    )


if __name__ == "__main__":
    main()
