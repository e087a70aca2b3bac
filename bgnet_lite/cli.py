"""The ``bgnet-lite`` command line.

    bgnet-lite data synth OUT [--pairs 918] [--size 256] [--seed 0] [--variation 1.0]
    bgnet-lite data deeppcb OUT [--source PATH | --download] [--size N] [--misalign M]
    bgnet-lite data check DIR
    bgnet-lite train DATA --variant S5 --out RUN [--profile cpu] ...
    bgnet-lite evaluate RUN DATA [--split test] [--json FILE]
    bgnet-lite predict RUN PAIRS OUT
"""

from __future__ import annotations

import argparse
import json
import sys

from .data.io import DataError

DESCRIPTION = """\
bgnet-lite: segment surface defects by comparing a defect-free TEMPLATE image with a SAMPLE
image whose background may be shifted, rotated or dilated (BGNet, Chen et al. 2024).

A dataset is a folder with pairs.csv (columns template,sample,mask,split) or with
template/, sample/, mask/ sub-folders holding files with matching names.
Start with:  bgnet-lite data synth data/ocd && bgnet-lite train data/ocd --variant S5 --out runs/s5
"""


def _cmd_synth(args) -> int:
    from .data.synth import SynthConfig, write_synth_dataset

    config = SynthConfig(pairs=args.pairs, size=args.size, seed=args.seed,
                         variation=args.variation)
    out = write_synth_dataset(args.out, config, overwrite=args.overwrite)
    print(f"wrote {config.pairs} OCD-like pairs at {config.size}x{config.size} to {out}")
    return 0


def _cmd_deeppcb(args) -> int:
    from .data.deeppcb import DeepPCBConfig, format_stats, prepare_deeppcb

    if not args.source and not args.download:
        raise DataError("give --source PATH (a folder containing PCBData/) or --download")
    config = DeepPCBConfig(size=args.size, misalign=args.misalign, seed=args.seed,
                           limit=args.limit)
    stats = prepare_deeppcb(args.out, source=args.source, download=args.download, config=config,
                            overwrite=args.overwrite)
    print(format_stats(stats))
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


def _cmd_train(args) -> int:
    from .engine import TrainConfig, train

    config = TrainConfig.from_args(args)
    result = train(config)
    print(json.dumps(result, indent=2))
    return 0


def _cmd_evaluate(args) -> int:
    from .engine import evaluate_run, format_metrics

    metrics = evaluate_run(args.run, args.data, split=args.split, json_path=args.json,
                           size=args.size)
    print(format_metrics(metrics))
    return 0


def _cmd_predict(args) -> int:
    from .engine import predict_folder

    written = predict_folder(args.run, args.pairs, args.out, theta=args.theta)
    print(f"wrote {written} mask(s) and overlay(s) to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
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

    train = commands.add_parser(
        "train", help="train a BGNet variant on a dataset folder",
        description="Train one of the paper's variants: S1 concatenation baseline, S2 Siamese + "
                    "direct subtraction, S3 + self/cross attention, S4 matching without "
                    "attention, S5 full BGNet. The best checkpoint on the validation split is "
                    "kept in RUN/best.pt.")
    train.add_argument("data", help="dataset folder (pairs.csv or template/ sample/ mask/)")
    train.add_argument("--variant", default="S5", choices=["S1", "S2", "S3", "S4", "S5"])
    train.add_argument("--out", required=True, help="run folder for checkpoints and logs")
    train.add_argument("--profile", choices=["quick", "cpu", "full"], default=None,
                       help="size of the run (default: $BGNET_PROFILE or cpu)")
    train.add_argument("--size", type=int, default=None, help="resize pairs to N x N")
    train.add_argument("--steps", type=int, default=None, help="optimisation steps")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--lr", type=float, default=None, help="Adam learning rate")
    train.add_argument("--match-loss", type=float, default=0.0, dest="match_loss",
                       help="weight of the matching loss (0 = off, as in the paper)")
    train.add_argument("--soft-match", action="store_true", dest="soft_match",
                       help="differentiable soft matched subtraction instead of eq. 8")
    train.add_argument("--align-fine-scales", action="store_true", dest="align_fine_scales",
                       help="S4/S5: resample the template at 1/2, 1/4 and 1/16 along a similarity "
                            "transform fitted to the 1/8 matches before subtracting (the paper "
                            "subtracts those scales in place)")
    train.add_argument("--local-match-px", type=float, default=0.0, dest="local_match_px",
                       help="at the scales without matching, subtract from each sample cell the "
                            "template cell with the nearest feature within this many pixels "
                            "(after --align-fine-scales, if given); 0 = in place, as in the paper")
    train.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                       dest="lr_schedule",
                       help="learning rate over the run: constant (default) or cosine decay to 0")
    train.add_argument("--focal-alpha", type=float, default=None, dest="focal_alpha",
                       help="weight of defect pixels in an alpha-balanced focal loss, in (0, 1); "
                            "0 = unweighted, as in the paper (default: the profile's)")
    train.add_argument("--theta", type=float, default=None, help="matching threshold")
    train.add_argument("--temperature", type=float, default=None,
                       help="matching scores are divided by C * temperature (default 0.1)")
    train.add_argument("--depth", type=int, default=None,
                       help="self/cross stack depth at 1/8 (1/32 uses twice as many)")
    train.add_argument("--attention-dim", type=int, default=None, dest="attention_dim",
                       help="width C_1 of the attention's Q, K, V (eq. 11), at most each scale's "
                            "channels; default: the channels (128 at 1/8, 512 at 1/32)")
    train.add_argument("--weights", choices=["auto", "imagenet", "none"], default="auto",
                       help="backbone initialisation")
    train.add_argument("--device", default=None, help="cpu, cuda, ... (default: best available)")
    train.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
    train.set_defaults(func=_cmd_train)

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
                    "folder; masks are not needed).")
    predict.add_argument("run")
    predict.add_argument("pairs")
    predict.add_argument("out")
    predict.add_argument("--theta", type=float, default=None, help="override the threshold")
    predict.set_defaults(func=_cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
