"""Cost of linear vs softmax attention and of dense vs chunked matching (chapters 4-5).

Prints two tables (the matching one first, see below):

1. forward time of ``linear_attention`` and ``softmax_attention`` (one image, C = 128 as 8 heads
   of 16) as the number of positions L grows by 4x, with the time ratio per 4x step (linear
   attention should stay near 4x; softmax grows near 16x).  Softmax is skipped where its
   ``[N, H, L, L]`` weights would need more than ``--softmax-max-gib``.
2. time and peak memory of ``match_dense`` and ``match_chunked`` for L = S positions, C = 128.
   Every case runs in a fresh subprocess, because torch's CPU allocator is invisible to
   tracemalloc.  Peak memory is the process's resident high-water mark: on Linux ``VmHWM`` of
   ``/proc/self/status``, reset (``/proc/self/clear_refs``) just before the call, so that the
   increase is exactly what the call added; ``ru_maxrss`` is printed too, but note that a spawned
   child inherits its parent's high-water mark as a floor (which is why this table runs first,
   while the parent is small).  Dense is skipped where its estimated need exceeds
   ``--dense-max-gib`` or half of the memory available now.

Attention times are the best of a few calls in CPU time of this process (``time.process_time``)
with ``--threads`` torch threads, default 1: on a shared machine wall time mostly measures the
neighbours, and threads that wait for each other at every parallel region distort the scaling.
The matching table gives wall and CPU time of its single call.

Run: ``python benchmarks/bench_attention_matching.py`` (a few minutes on one CPU core).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bgnet_lite.methods.bgnet.attention import linear_attention, softmax_attention  # noqa: E402
from bgnet_lite.methods.bgnet.matching import MatchConfig, match_chunked, match_dense  # noqa: E402

GIB = 2**30
CHANNELS = 128
HEADS = 8


def best_time(function, repeats: int) -> float:
    """Shortest CPU time in seconds of ``repeats`` calls (after one warm-up call)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return min(times)


def attention_table(lengths: list[int], softmax_max_gib: float) -> None:
    head_dim = CHANNELS // HEADS
    print(f"\nattention forward, N=1, C={CHANNELS} = {HEADS} heads x {head_dim}, L = S")
    print("    best CPU time of a few calls; x prev = time ratio to the previous row (L / 4)")
    print(f"{'L':>7} | {'linear ms':>10} | {'x prev':>6} | {'softmax ms':>10} | {'x prev':>6}")
    print("-" * 51)
    previous_linear = previous_softmax = None
    gen = torch.Generator().manual_seed(0)
    for length in lengths:
        query, key, value = (
            torch.randn(1, length, HEADS, head_dim, generator=gen) for _ in range(3)
        )
        repeats = 7 if length <= 4096 else 5
        with torch.no_grad():
            linear_s = best_time(functools.partial(linear_attention, query, key, value), repeats)
            # weights [N, H, L, S] plus the softmax output of the same size
            softmax_bytes = 2 * HEADS * length * length * 4
            softmax_s = None
            if softmax_bytes <= softmax_max_gib * GIB:
                softmax_s = best_time(functools.partial(softmax_attention, query, key, value), 3)
        linear_ratio = f"{linear_s / previous_linear:6.2f}" if previous_linear else f"{'':>6}"
        if softmax_s is None:
            softmax_cell = f"{f'skip ({softmax_bytes / GIB:.0f} GiB)':>10} | {'':>6}"
        else:
            ratio = f"{softmax_s / previous_softmax:6.2f}" if previous_softmax else f"{'':>6}"
            softmax_cell = f"{softmax_s * 1e3:10.2f} | {ratio}"
        print(f"{length:7d} | {linear_s * 1e3:10.2f} | {linear_ratio} | {softmax_cell}")
        previous_linear, previous_softmax = linear_s, softmax_s


def status_kib(field: str) -> int | None:
    """A ``Vm...`` line of /proc/self/status in KiB (None where there is no procfs)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Set VmHWM back to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def run_matching_case(method: str, length: int, chunk_size: int) -> dict:
    """One matching call in this process; returns its time and peak memory."""
    gen = torch.Generator().manual_seed(0)
    template = torch.randn(1, length, CHANNELS, generator=gen)
    # the sample is the template shifted by 5 positions plus noise: most cells have a match
    sample = template.roll(5, dims=1) + 0.5 * torch.randn(1, length, CHANNELS, generator=gen)
    config = MatchConfig(theta=0.2, temperature=0.1, chunk_size=chunk_size)
    match = match_dense if method == "dense" else match_chunked
    with torch.no_grad():
        match(template[:, :64], sample[:, :64], config)  # warm-up: load kernels before measuring
        hwm_reset = reset_peak_rss()
        rss_before_kib = status_kib("VmRSS")
        maxrss_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start, start_cpu = time.perf_counter(), time.process_time()
        result = match(template, sample, config)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    hwm_after_kib = status_kib("VmHWM")
    maxrss_after_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if hwm_reset and rss_before_kib is not None and hwm_after_kib is not None:
        peak_kib, increase_kib = hwm_after_kib, hwm_after_kib - rss_before_kib
    else:  # no procfs: ru_maxrss, whose floor may be the parent's peak
        peak_kib, increase_kib = maxrss_after_kib, maxrss_after_kib - maxrss_before_kib
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "peak_kib": peak_kib,
        "increase_kib": increase_kib,
        "ru_maxrss_kib": maxrss_after_kib,
        "matches": int((result.sample_to_template >= 0).sum()),
    }


def available_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / GIB
    except OSError:
        return None
    return None


def matching_table(lengths: list[int], chunk_size: int, dense_max_gib: float, threads: int) -> None:
    print(f"\nmatching, N=1, C={CHANNELS}, S = L, chunk_size={chunk_size}, one call per fresh")
    print("    process; peak = resident high-water mark, increase = added by the call itself")
    header = (
        f"{'L':>7} | {'method':>7} | {'wall s':>7} | {'CPU s':>7} | {'peak GiB':>8} | "
        f"{'incr. MiB':>9}"
    )
    print(header + f" | {'ru_maxrss GiB':>13} | {'matches':>7}")
    print("-" * (len(header) + 26))
    for length in lengths:
        for method in ("dense", "chunked"):
            if method == "dense":
                # score blocks + probability blocks + their concatenation, float32
                need_gib = 3.5 * length * length * 4 / GIB
                free = available_gib()
                limit = dense_max_gib if free is None else min(dense_max_gib, free / 2)
                if need_gib > limit:
                    print(f"{length:7d} | {method:>7} | skipped: needs about {need_gib:.1f} GiB")
                    continue
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--matching-case",
                method,
                str(length),
                "--chunk-size",
                str(chunk_size),
                "--threads",
                str(threads),
            ]
            completed = subprocess.run(command, capture_output=True, text=True, check=False)
            if completed.returncode != 0:
                print(f"{length:7d} | {method:>7} | failed: {completed.stderr.strip()[-200:]}")
                continue
            case = json.loads(completed.stdout.strip().splitlines()[-1])
            peak = case["peak_kib"] * 1024 / GIB
            increase = case["increase_kib"] / 1024
            maxrss = case["ru_maxrss_kib"] * 1024 / GIB
            print(
                f"{length:7d} | {method:>7} | {case['seconds']:7.2f} | "
                f"{case['cpu_seconds']:7.2f} | {peak:8.2f} | {increase:9.0f} | "
                f"{maxrss:13.2f} | {case['matches']:7d}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--attention-lengths", type=int, nargs="+", default=[256, 1024, 4096, 16384]
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--matching-lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--softmax-max-gib", type=float, default=4.0)
    parser.add_argument("--dense-max-gib", type=float, default=6.0)
    parser.add_argument("--matching-case", nargs=2, metavar=("METHOD", "L"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.matching_case:
        method, length = args.matching_case
        print(json.dumps(run_matching_case(method, int(length), args.chunk_size)))
        return

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    # matching first: its subprocesses would inherit the parent's memory peak of table 1
    matching_table(args.matching_lengths, args.chunk_size, args.dense_max_gib, args.threads)
    attention_table(args.attention_lengths, args.softmax_max_gib)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
