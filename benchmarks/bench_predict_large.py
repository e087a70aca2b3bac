"""Prediction on large pairs: wall time and peak memory of BGNet S5 with the dense and the
chunked matcher (chapter 7; ``bgnet-lite predict`` switches to chunked above 64 x 64 cells).

Usage: ``python benchmarks/bench_predict_large.py [--sizes 512 1024 2048] [--threads N]``

Each (size, matcher) runs in its own process (so the peak resident memory is that case's
alone): one forward pass of an untrained S5 (random weights, no grad, eval) on a random pair.
The dense matcher holds an L x S matrix, L = S = (size / 8)^2 cells: cases whose matrix alone
would pass ``--max-dense-gib`` are skipped and said so.  Machine-dependent; not a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CASE = """
import json, resource, sys, time
import torch
from bgnet_lite.methods import create_model
size, chunked, threads = int(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
torch.set_num_threads(threads)
model = create_model("bgnet-s5", weights="none", chunked_matching=chunked).eval()
generator = torch.Generator().manual_seed(0)
template, sample = torch.rand(2, 1, 3, size, size, generator=generator)
with torch.no_grad():
    started = time.perf_counter()
    logits = model(template, sample)
    seconds = time.perf_counter() - started
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_gib": peak_kib / 2**20,
                  "shape": list(logits.shape)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-dense-gib", type=float, default=8.0,
                        help="skip the dense matcher where its L x S float32 matrix exceeds this")
    args = parser.parse_args()
    print(f"BGNet S5, random weights, batch 1, no grad, {args.threads} threads; peak = max "
          "resident memory of the process")
    print(f"{'size':>6} | {'matcher':8} | {'cells L':>8} | {'L x S GiB':>9} | {'seconds':>8} | "
          f"{'peak GiB':>8}")
    for size in args.sizes:
        cells = (size // 8) ** 2
        matrix_gib = cells * cells * 4 / 2**30
        for chunked in (False, True):
            name = "chunked" if chunked else "dense"
            if not chunked and matrix_gib > args.max_dense_gib:
                print(f"{size:>6} | {name:8} | {cells:>8} | {matrix_gib:>9.2f} | skipped (over "
                      f"--max-dense-gib {args.max_dense_gib:g})")
                continue
            result = subprocess.run([sys.executable, "-c", CASE, str(size),
                                     "1" if chunked else "0", str(args.threads)],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                print(f"{size:>6} | {name:8} | {cells:>8} | {matrix_gib:>9.2f} | failed: "
                      f"{result.stderr.strip().splitlines()[-1][:60]}")
                continue
            found = json.loads(result.stdout.strip().splitlines()[-1])
            print(f"{size:>6} | {name:8} | {cells:>8} | {matrix_gib:>9.2f} | "
                  f"{found['seconds']:>8.1f} | {found['peak_gib']:>8.2f}")


if __name__ == "__main__":
    main()
