"""The ``bgnet-lite`` command line.

    bgnet-lite data synth OUT [--pairs 918] [--size 256] [--seed 0] [--variation 1.0]
    bgnet-lite data deeppcb OUT [--source PATH | --download] [--size N] [--misalign M]
    bgnet-lite data check DIR
    bgnet-lite train DATA --out RUN [--method NAME | --variant S5] [--profile cpu] ...
    bgnet-lite methods [NAME]
    bgnet-lite evaluate RUN DATA [--split test] [--json FILE]
    bgnet-lite predict RUN PAIRS OUT
    bgnet-lite reproduce table1|table2|table3|robustness [--profile cpu] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .data.io import DataError
from .dataclass_flags import add_field_flag, field_default, option_value

DESCRIPTION = """\
bgnet-lite: segment surface defects by comparing a defect-free TEMPLATE image with a SAMPLE
image whose background may be shifted, rotated or dilated (BGNet, Chen et al. 2024).

A dataset is a folder with pairs.csv (columns template,sample,mask,split) or with
template/, sample/, mask/ sub-folders holding files with matching names.
Start with:  bgnet-lite data synth data/ocd && bgnet-lite train data/ocd --variant S5 --out runs/s5
Methods:     bgnet-lite methods
"""


def _cmd_synth(args) -> int:
    from .data.synth import SynthConfig, write_synth_dataset

    try:
        config = SynthConfig(pairs=args.pairs, size=args.size, seed=args.seed,
                             variation=args.variation)
    except ValueError as error:  # a bad setting: say which, no traceback
        raise DataError(f"data synth: {error}") from None
    out = write_synth_dataset(args.out, config, overwrite=args.overwrite)
    print(f"wrote {config.pairs} OCD-like pairs at {config.size}x{config.size} to {out}")
    return 0


def _cmd_deeppcb(args) -> int:
    from .data.deeppcb import DeepPCBConfig, format_stats, prepare_deeppcb

    if not args.source and not args.download:
        raise DataError("give --source PATH (a folder containing PCBData/) or --download")
    try:
        config = DeepPCBConfig(size=args.size, misalign=args.misalign, seed=args.seed,
                               limit=args.limit)
    except ValueError as error:
        raise DataError(f"data deeppcb: {error}") from None
    stats = prepare_deeppcb(args.out, source=args.source, download=args.download, config=config,
                            overwrite=args.overwrite)
    print(format_stats(stats))
    return 0


def _cmd_reproduce(args) -> int:
    from .profiles import get_profile
    from .reproduce import dry_run, format_table, read_results, run_table

    profile = get_profile(args.profile).name
    try:
        if args.dry_run:
            plan = dry_run(args.table, profile, args.seeds, args.only)
            for item in plan:
                print(f"{item['cell']:40s} {item['method']:16s} {item['status']:7s} "
                      f"~{item['estimate_s'] / 60:6.1f} min")
            pending = [item for item in plan if item["status"] != "done"]
            print(f"{len(pending)} of {len(plan)} cells to run, about "
                  f"{sum(item['estimate_s'] for item in pending) / 3600:.1f} h of training "
                  "on this machine (estimated from finished cells, else from two timed steps)")
            return 0
        results = run_table(args.table, profile, args.seeds, args.only,
                            progress=not args.no_progress)
    except (LookupError, ValueError, FileNotFoundError) as error:
        raise SystemExit(f"bgnet-lite reproduce: {error}") from None
    if results.get("cells"):
        print(format_table(read_results(args.table, profile)))
    return 0


def _cmd_check(args) -> int:
    from .data.folder import check_dataset

    summary, problems = check_dataset(args.dir, require_mask=not args.no_mask)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{args.dir}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    splits = ", ".join(f"{k} {v}" for k, v in summary["splits"].items())
    print(f"{summary['root']}: valid, {summary['pairs']} pairs ({splits}), "
          f"{summary['templates']} template(s), classes {summary['classes']}, "
          f"{summary['with_flow']} with flow")
    for note in summary["notes"]:
        print(f"note: {note}")
    return 0


def train_config(argv: list[str]):
    """The TrainConfig ``bgnet-lite train ...`` builds from ``argv`` (its arguments after
    ``train``): only the flags given are set; the profile and the method fill the rest
    (chapter 7)."""
    argv = ["train", *argv]
    return _train_config(build_parser(_method_from_argv(argv)).parse_args(argv))


def _train_config(args):
    from .methods import get_method
    from .train import TrainConfig

    settings = {name: value for name, value in vars(args).items() if name in _train_settings()}
    options = {name: option_value(value) for name, value in vars(args).items()
               if name in _option_names(args.method)}
    try:  # bad values fail here, before any data is read or any file written
        get_method(args.method).make_options(1, 3, **options)
        return TrainConfig(data=args.data, out=args.out, method=args.method, options=options,
                           **settings)
    except ValueError as error:
        raise SystemExit(f"bgnet-lite train: {error}") from None


def _cmd_train(args) -> int:
    from .train import train

    result = train(_train_config(args), progress=sys.stderr.isatty())  # no bars in logs
    print(json.dumps(result, indent=2))
    return 0


def _cmd_evaluate(args) -> int:
    from .train import evaluate_run, format_metrics

    metrics = evaluate_run(args.run, args.data, split=args.split, json_path=args.json,
                           size=args.size)
    print(format_metrics(metrics))
    return 0


def _cmd_predict(args) -> int:
    from .train import predict_folder

    written = predict_folder(args.run, args.pairs, args.out, size=args.size,
                             progress=sys.stderr.isatty())
    print(f"wrote {written} mask(s) and overlay(s) to {args.out}")
    return 0


def _cmd_methods(args) -> int:
    from .methods import get_method, method_names

    if args.name:
        entry = get_method(args.name)
        print(f"{entry.name} ({entry.family}): {entry.summary}\n{entry.citation}")
        print(f"paper's Params (Table 3): {_or_dash(entry.paper_params_mb)} MB")
        print("options (bgnet-lite train DATA --method NAME --OPTION VALUE):")
        for item in entry.option_fields():
            print(f"  --{item.name.replace('_', '-'):<22} default {field_default(item)!r}")
        return 0
    width = max(len(name) for name in method_names())
    print(f"{'method':<{width}} {'family':<26} {'paper MB':>8} {'paper mIoU':>10}  summary")
    for name in method_names():
        entry = get_method(name)
        print(f"{name:<{width}} {entry.family:<26} {_or_dash(entry.paper_params_mb):>8} "
              f"{_or_dash(entry.paper_miou_ocd):>10}  {entry.summary}")
    print("paper MB / mIoU: the paper's Tables 3 and 2, on its own OCDs/PCBs data (not ours); "
          "the paper does not define its MB")
    return 0


def _or_dash(value) -> str:
    return "-" if value is None else f"{value:g}"


def _train_settings() -> dict[str, dataclasses.Field]:
    """TrainConfig's fields a flag sets (data, out, method and options are set otherwise)."""
    from .train import TrainConfig

    return {item.name: item for item in dataclasses.fields(TrainConfig)
            if item.name not in ("data", "out", "method", "options")}


def _option_names(method: str) -> set[str]:
    from .methods import get_method

    return {item.name for item in get_method(method).option_fields()}


def _method_from_argv(argv: list[str] | None) -> str:
    """The method named by --method or --variant (default bgnet-s5), before full parsing."""
    from .methods import method_name, method_names

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--method", default=None)
    pre.add_argument("--variant", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.variant and known.method:
        raise SystemExit("bgnet-lite train: give --method or --variant, not both")
    if known.variant:
        try:
            return method_name(known.variant)
        except ValueError as error:
            raise SystemExit(f"bgnet-lite train: {error}") from None
    name = known.method or "bgnet-s5"
    if name not in method_names():
        raise SystemExit(f"bgnet-lite train: unknown method {name!r}; choose one of "
                         f"{', '.join(method_names())}")
    return name


def build_parser(method: str = "bgnet-s5") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bgnet-lite", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="make, prepare or check a dataset folder")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    synth = data_commands.add_parser(
        "synth", help="generate the OCD-like template/sample dataset",
        description="Render optical-communication-device-like template/sample pairs with "
                    "background spatial variation, texture variation, five defect types with "
                    "exact masks, and the ground-truth correspondence (flow).")
    synth.add_argument("out", help="output folder (must not exist or be empty)")
    synth.add_argument("--pairs", type=int, default=918, help="number of pairs (paper: 918)")
    synth.add_argument("--size", type=int, default=256, help="image side in pixels")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--variation", type=float, default=1.0,
                       help="scales all spatial variation; 0 = perfectly aligned backgrounds")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    synth.set_defaults(func=_cmd_synth)

    pcb = data_commands.add_parser(
        "deeppcb", help="prepare DeepPCB with derived pixel masks",
        description="Prepare the public DeepPCB pairs (research use only) with pixel masks "
                    "derived inside each annotated box.")
    pcb.add_argument("out", help="output folder")
    source = pcb.add_mutually_exclusive_group()
    source.add_argument("--source", help="local folder that contains PCBData/")
    source.add_argument("--download", action="store_true",
                        help="download the repository archive from GitHub")
    pcb.add_argument("--size", type=int, default=256, help="output image side in pixels")
    pcb.add_argument("--misalign", type=float, default=0.0,
                     help="extra template misalignment, fraction of the image size")
    pcb.add_argument("--seed", type=int, default=0)
    pcb.add_argument("--limit", type=int, default=None, help="only the first K pairs per split")
    pcb.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    pcb.set_defaults(func=_cmd_deeppcb)

    check = data_commands.add_parser(
        "check", help="validate a dataset folder",
        description="Exit 0 with a summary when DIR is a valid dataset folder; otherwise print "
                    "one line per problem, naming the file, and exit 1.")
    check.add_argument("dir")
    check.add_argument("--no-mask", action="store_true", help="masks are not required")
    check.set_defaults(func=_cmd_check)

    _add_train_parser(commands, method)

    evaluate = commands.add_parser(
        "evaluate", help="metrics of a trained run on a split",
        description="Print precision, recall, F2, mIoU, mACC and parameter size of RUN's best "
                    "checkpoint on a split of DATA; --json writes them to a file.")
    evaluate.add_argument("run")
    evaluate.add_argument("data")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("--json", default=None, help="write the metrics here")
    evaluate.add_argument("--size", type=int, default=None, help="override the run's image size")
    evaluate.set_defaults(func=_cmd_evaluate)

    predict = commands.add_parser(
        "predict", help="predict masks for a folder of pairs",
        description="Write a mask PNG and an overlay PNG for every pair in PAIRS (a dataset "
                    "folder; masks are not needed), at each pair's own resolution, named after "
                    "the sample's path inside PAIRS.")
    predict.add_argument("run")
    predict.add_argument("pairs")
    predict.add_argument("out")
    predict.add_argument("--size", type=int, default=None,
                         help="resize every pair to SIZE x SIZE for the model (default: each "
                              "pair at its own resolution)")
    predict.set_defaults(func=_cmd_predict)

    methods = commands.add_parser(
        "methods", help="list the registered methods, or one method's options",
        description="Every method trainable with `bgnet-lite train --method NAME`, its family "
                    "(the paper's Table 2 groups) and the paper's numbers for it; with NAME, "
                    "its citation and options.")
    methods.add_argument("name", nargs="?", default=None)
    methods.set_defaults(func=_cmd_methods)
    _add_reproduce_parser(commands)
    return parser


def _add_reproduce_parser(commands) -> None:
    from .profiles import PROFILES
    from .reproduce import TABLES

    reproduce = commands.add_parser(
        "reproduce", help="train and evaluate every cell of a paper table (resumable)",
        description="Train and evaluate every (method, data setting, seed) cell of a table "
                    "through the registry; finished cells are skipped, an interrupted one "
                    "resumes from its checkpoint, and each result is written at once to "
                    "results/<table>/<profile>.json, then the table is printed beside the "
                    "paper's numbers. Run `robustness` first: it fixes the tables' moderate "
                    "data setting.")
    reproduce.add_argument("table", choices=list(TABLES))
    reproduce.add_argument("--profile", default=None, choices=list(PROFILES),
                           help="default: $BGNET_PROFILE or cpu")
    reproduce.add_argument("--seeds", type=int, nargs="+", default=None,
                           help="default: the table's (0 1 2; 0 1 for robustness)")
    reproduce.add_argument("--only", nargs="+", default=None,
                           help="row labels or method names to run")
    reproduce.add_argument("--dry-run", action="store_true",
                           help="list the cells and the estimated time, train nothing")
    reproduce.add_argument("--no-progress", action="store_true", help="no progress bars")
    reproduce.set_defaults(func=_cmd_reproduce)


def _add_train_parser(commands, method: str) -> None:
    from .methods import get_method
    from .methods.bgnet import VARIANTS
    from .profiles import PROFILES
    from .train import LR_SCHEDULES

    train = commands.add_parser(
        "train", help="train a registered method on a dataset folder",
        description="Train a registered method (`bgnet-lite methods` lists them; "
                    "--variant S1..S5 is short for --method bgnet-s1..bgnet-s5, the paper's "
                    "ablation). The best checkpoint on the validation split is kept in "
                    "RUN/best.pt. Unset training settings come from the profile; the method's "
                    f"options below are those of {method} (`--method NAME --help` for another).")
    train.add_argument("data", help="dataset folder (pairs.csv or template/ sample/ mask/)")
    train.add_argument("--out", required=True, help="run folder for checkpoints and logs")
    train.add_argument("--method", default=method, help="a registered method (default bgnet-s5)")
    train.add_argument("--variant", choices=VARIANTS, help="the paper's ablation variant: "
                       "short for --method bgnet-s1 .. bgnet-s5")
    settings = train.add_argument_group("training settings (default: the profile's)")
    choices = {"profile": list(PROFILES), "lr_schedule": list(LR_SCHEDULES)}
    for name, item in _train_settings().items():
        shown = "the profile's" if field_default(item) is None else None
        add_field_flag(settings, item, choices.get(name), shown)
    options = train.add_argument_group(f"options of {method}")
    for item in get_method(method).option_fields():
        add_field_flag(options, item)
    train.set_defaults(func=_cmd_train, method=method)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    method = _method_from_argv(argv) if argv[:1] == ["train"] else "bgnet-s5"
    args = build_parser(method).parse_args(argv)
    try:
        return args.func(args)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
