"""Train and evaluate the ablation runs of a profile; write results/ablation-<profile>.json.

    python tools/reproduce_ablation.py --profile cpu              # S2, S5, S5 + options
    python tools/reproduce_ablation.py --profile full --runs all  # S1-S5 and the S5 options
    python tools/reproduce_ablation.py --profile cpu --runs S2,S5-align --seed 1  # another seed

Each entry of the JSON holds the test-split metrics of the run's best-on-validation checkpoint
(unseen batches of the OCD-like set), matching quality, parameter size, and provenance (commit,
profile, seed, device, wall time).  Runs are cached under runs/<profile>/ and reused.  The seed
draws the dataset and the initialisation; a seed other than 0 gets its own run folders
(``S2-seed1``) and JSON (``ablation-cpu-seed1.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bgnet_lite.data.cache import ensure_synth  # noqa: E402
from bgnet_lite.engine import ensure_run, evaluate_run, format_metrics, save_json  # noqa: E402
from bgnet_lite.profiles import get_profile  # noqa: E402

RUNS = {
    "S1": ("S1", {}),
    "S2": ("S2", {}),
    "S3": ("S3", {}),
    "S4": ("S4", {}),
    "S5": ("S5", {}),
    "S5-match": ("S5", {"match_loss": 1.0}),
    "S5-soft": ("S5", {"soft_match": True}),
    # deviation: also align 1/2, 1/4, 1/16 along a similarity fitted to the 1/8 matches
    "S5-align": ("S5", {"match_loss": 1.0, "align_fine_scales": True}),
    # deviation: then subtract the nearest template feature within 6 px at 1/2 and 1/4; the
    # matching loss weighs 0.1 (results/investigation-cpu.json: 1.0 holds the segmentation back)
    "S5-local": ("S5", {"match_loss": 0.1, "align_fine_scales": True, "local_match_px": 6.0}),
}
DEFAULT_RUNS = ("S2", "S5", "S5-match", "S5-soft", "S5-align", "S5-local")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=None, choices=["quick", "cpu", "full"])
    parser.add_argument("--runs", default=",".join(DEFAULT_RUNS),
                        help="comma-separated names from " + ", ".join(RUNS) + " or 'all'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON path (default results/ablation-P.json)")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    names = list(RUNS) if args.runs == "all" else args.runs.split(",")
    data = ensure_synth(profile.name, seed=args.seed, progress=True)
    suffix = f"-seed{args.seed}" if args.seed else ""
    out_path = Path(args.out or REPO / "results" / f"ablation-{profile.name}{suffix}.json")
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    for name in names:
        variant, overrides = RUNS[name]
        started = time.time()
        run = ensure_run(data, variant, profile=profile.name, name=name + suffix,
                         seed=args.seed, **overrides)
        metrics = evaluate_run(run, data, split="test")
        metrics["name"] = name
        metrics["overrides"] = overrides
        metrics["data"] = str(Path(data).relative_to(REPO)) if Path(data).is_relative_to(
            REPO) else str(data)
        metrics["run"] = str(Path(run).relative_to(REPO)) if Path(run).is_relative_to(
            REPO) else str(run)
        results[name] = metrics
        save_json(out_path, results)
        print(format_metrics(metrics), f"\n  (this script: {time.time() - started:.0f} s)",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
