"""The command line's arguments: what each flag means and which values it accepts.

Values out of range are bad usage: argparse rejects them (exit 2) with one line naming
the flag, before any model is read. `UsageError` is the same for combinations of flags
that only the command can judge (a CKA method without --calib).
"""

from __future__ import annotations

import argparse
import math
import sys

from onnxprune.errors import OnnxPruneError

# What `prune` accepts; the Olive pass (integrations/olive.py) takes the same.
METHODS = ("channels", "layers", "everything")
CRITERIA = ("auto", "l1", "l2", "bn", "wanda", "fluctuation", "obs", "kl", "activation")
KIND_RATIOS = (("heads", "attention heads"), ("hidden", "residual-stream (hidden) width"),
               ("channels", "conv channels and MLP neurons"))  # per-kind ratio flags, and what each prunes

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TARGET_MISSED = 0, 1, 2, 3


class UsageError(OnnxPruneError):
    """Flags that do not fit together: exit 2, like an argparse error."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `onnxprune: error: ...` and exit 2."""

    def error(self, message: str):
        sys.stderr.write(f"onnxprune: error: {message} (usage: `{self.prog} --help`)\n")
        sys.exit(EXIT_USAGE)


def fraction(low_open: bool):
    """A float in [0, 1) (or (0, 1) when `low_open`): ratios and targets."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        low_ok = value > 0 if low_open else value >= 0
        if math.isnan(value) or not low_ok or value >= 1:
            interval = "(0, 1)" if low_open else "[0, 1)"
            raise argparse.ArgumentTypeError(f"{text} is not in {interval}: give the fraction to remove")
        return value

    return parse


def at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def parser() -> Parser:
    p = Parser(prog="onnxprune", description="Structured pruning of ONNX models: smaller, verified, runs anywhere ONNX runs.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    shape_help = "concrete shape for a symbolic input, e.g. input=1,3,224,224 (repeatable)"
    pr = sub.add_parser("prune", help="prune channel groups and write a smaller model")
    _prune_args(pr, shape_help)
    _cka_args(pr.add_argument_group("CKA-guided methods (--method layers, everything)"))
    ins = sub.add_parser("inspect", help="show channel groups, frozen reasons and costs")
    ins.add_argument("model", help="input .onnx file")
    ins.add_argument("--json", action="store_true", help="print JSON instead of text")
    ins.add_argument("--input-shape", action="append", default=[], metavar="NAME=DIMS", help=shape_help)
    ins.add_argument("--no-nodes", action="store_true", help="omit the per-node cost table")
    ins.add_argument("--blocks", action="store_true", help="list residual blocks (removable or why not) with their MACs")
    ins.add_argument("--html", metavar="PAGE", help="also write an interactive HTML page of the graph, groups and blocks")
    _interface_args(ins)
    sw = sub.add_parser("sweep", help="prune several models x methods x targets, one report each and a summary")
    sw.add_argument("models", nargs="+", metavar="MODEL", help="input .onnx files")
    sw.add_argument("-o", "--output", required=True, metavar="DIR", help="directory for the models, reports and summary.json")
    sw.add_argument("--calib", required=True, metavar="DATA", help="calibration data, as for prune")
    sw.add_argument("--method", nargs="+", choices=("layers", "everything"), default=["everything"])
    sw.add_argument("--target-flops", nargs="+", type=fraction(True), required=True, metavar="R")
    sw.add_argument("--recover", choices=("auto", "ls", "none"), default="auto", help="as for prune (default auto)")
    sw.add_argument("--samples", type=at_least(1), metavar="N", help="calibration samples per run")
    sw.add_argument("--eval", metavar="NPZ", help="labelled data: accuracy before and after in each report")
    sw.add_argument("--html", action="store_true", help="write each run's HTML page next to its report")
    sw.add_argument("--workers", type=at_least(1), default=1, metavar="N", help="run N at a time as Ray tasks")
    sw.add_argument("--ray", metavar="ADDRESS", help="run them as tasks on this Ray cluster")
    return p


def _prune_args(pr, shape_help: str) -> None:
    pr.add_argument("model", help="input .onnx file")
    pr.add_argument("-o", "--output", required=True, help="where to write the pruned .onnx")
    pr.add_argument("--ratio", type=fraction(False), default=0.5,
                    help="fraction of each group's channels to remove, in [0, 1) (default 0.5)")
    for kind, what in KIND_RATIOS:
        pr.add_argument(f"--{kind}", type=fraction(False), metavar="R", help=f"ratio for {what} (default: --ratio)")
    pr.add_argument("--criterion", choices=CRITERIA,
                    default="auto",
                    help="importance criterion (default auto: fluctuation with --calib for --method channels, else l1; on --calib data: wanda |W|·‖x‖, fluctuation (FLAP), obs "
                         "(error left after refitting), kl (output KL with each channel removed, one pass per channel / 8), "
                         "channels only; activation: mean |activation|, everything only)")
    pr.add_argument("--global", dest="global_ranking", action="store_true", help="rank channels across all groups at once")
    pr.add_argument("--round-to", type=at_least(1), default=1, metavar="N", help="keep a multiple of N channels per group")
    pr.add_argument("--ignore", nargs="+", default=[], metavar="NODE", help="node names whose channels stay")
    pr.add_argument("--input-shape", action="append", default=[], metavar="NAME=DIMS", help=shape_help)
    pr.add_argument("--report", metavar="JSON", help="write a JSON report (costs, groups, verification, plan)")
    pr.add_argument("--plan", metavar="JSON", help="apply this pruning plan (its channels, then its blocks)")
    pr.add_argument("--save-plan", metavar="JSON", help="write the pruning plan used")
    pr.add_argument("--html", metavar="PAGE", help="write an interactive HTML page: graph, groups, widths, plan, trajectory")
    pr.add_argument("--recover", choices=("auto", "ls", "bias", "synthetic", "batchnorm", "sequential", "none"), default="auto",
                    help="repair what was cut, without training: ls refits the layers that read removed channels "
                         "(and folds a compensation for dropped blocks) by least squares on --calib, bias only moves "
                         "their means into the bias, synthetic refits on synthesized inputs (data-free), batchnorm moves "
                         "means read off the model's BatchNorm statistics into the bias (data-free), sequential "
                         "refits one layer at a time from the pruned model's own inputs (slower), none keeps "
                         "the plain cut (default auto: ls with --calib, synthetic without)")
    pr.add_argument("--eval", metavar="NPZ", help="labelled data (x, y): top-1 accuracy before and after (everything: every iteration too)")
    _interface_args(pr)


def _cka_args(cka) -> None:
    cka.add_argument("--method", choices=METHODS, default="channels",
                     help="channels: magnitude criteria per group (default); layers: drop residual blocks by CKA; "
                          "everything: each iteration, a block or the same MACs of channels, whichever keeps CKA higher")
    cka.add_argument("--calib", metavar="DATA",
                     help="calibration data: .npy, .npz (by input name, or x), or an image folder; for the CKA methods, "
                          "the data criteria and recovery")
    cka.add_argument("--preprocess", metavar="SPEC", help="for an image folder, e.g. resize=32x32,mean=0.5,std=0.25,layout=NCHW")
    cka.add_argument("--samples", type=at_least(1), metavar="N", help="calibration samples to use (default: all), chosen with --seed")
    cka.add_argument("--batch-size", type=at_least(1), default=64, metavar="B", help="calibration batch size (default 64)")
    cka.add_argument("--seed", type=int, default=0, help="seed for choosing calibration samples (default 0)")
    cka.add_argument("--target-flops", type=fraction(True), metavar="R", help="stop once this fraction of MACs is removed")
    cka.add_argument("--target-params", type=fraction(True), metavar="R", help="stop once this fraction of parameters is removed")
    cka.add_argument("--target-blocks", type=at_least(1), metavar="N", help="stop after dropping N blocks")
    cka.add_argument("--min-blocks-per-stage", type=at_least(0), default=2, metavar="N", help="blocks every stage keeps (default 2)")
    cka.add_argument("--tap", action="append", default=[], metavar="VALUE",
                     help="representation to compare (default: the classifier's input); repeatable")
    cka.add_argument("--debiased", action="store_true", help="debiased CKA (default biased, as in the papers)")
    cka.add_argument("--target-latency", type=fraction(True), metavar="R",
                     help="everything: stop once ONNX Runtime latency (batch 1) fell by this fraction")
    cka.add_argument("--scope", choices=("internal", "all"), default="internal",
                     help="everything: neuron candidates from block-internal groups only (default, as in the paper) or all")
    cka.add_argument("--arbiter", choices=("cka", "layers", "neurons", "random"), default="cka",
                     help="everything: how to choose between the two candidates (default cka; others are baselines)")
    cka.add_argument("--neuron-steps", choices=("equal", "grow"), default="equal",
                     help="everything: equal (the paper: each neuron step has the layer candidate's MACs) or grow "
                          "(2x, 4x, up to 8x while neurons keep winning; a block still wins only at equal MACs)")
    cka.add_argument("--workers", type=at_least(1), default=1, metavar="N",
                     help="layers/everything: score candidates in N local Ray worker processes (pip install onnxprune[ray])")
    cka.add_argument("--ray", metavar="ADDRESS", help="layers/everything: run the workers on this Ray cluster")
    cka.add_argument("--fine-tune", metavar="FILE.py:FUNC",
                     help="everything: call FUNC(model) -> model after every iteration and at the end")
    cka.add_argument("--plot", metavar="PNG", help="write CKA and MACs against iteration (needs matplotlib)")


def _interface_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resize-io", action="append", default=[], metavar="NAME",
        help="a graph input or output whose static dims may shrink (e.g. a hidden-state output); repeatable",
    )
    parser.add_argument(
        "--keep-cache-shape", action="store_true",
        help="keep KV-cache inputs/outputs at their shape (their heads are then not pruned)",
    )
