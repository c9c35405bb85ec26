"""Command line: `onnxprune prune` and `onnxprune inspect`.

Exit codes: 0 done, 1 failed (one line on stderr, no traceback, nothing written),
2 bad usage. Set ONNXPRUNE_DEBUG=1 to see tracebacks of unexpected errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from onnxprune.errors import OnnxPruneError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="onnxprune",
        description="Structured pruning of ONNX models: smaller, verified, runs anywhere ONNX runs.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    shape_help = "concrete shape for a symbolic input, e.g. input=1,3,224,224 (repeatable)"
    pr = sub.add_parser("prune", help="prune channel groups and write a smaller model")
    pr.add_argument("model", help="input .onnx file")
    pr.add_argument("-o", "--output", required=True, help="where to write the pruned .onnx")
    pr.add_argument("--ratio", type=float, default=0.5, help="fraction of each group's channels to remove (default 0.5)")
    for kind, what in (("heads", "attention heads"), ("hidden", "residual-stream (hidden) width"),
                       ("channels", "conv channels and MLP neurons")):
        pr.add_argument(f"--{kind}", type=float, metavar="R", help=f"ratio for {what} (default: --ratio)")
    pr.add_argument("--criterion", choices=("l1", "l2", "bn", "activation"), default="l1",
                    help="importance criterion (default l1; activation: mean |activation| on --calib, everything only)")
    pr.add_argument("--global", dest="global_ranking", action="store_true", help="rank channels across all groups at once")
    pr.add_argument("--round-to", type=int, default=1, metavar="N", help="keep a multiple of N channels per group")
    pr.add_argument("--ignore", nargs="+", default=[], metavar="NODE", help="node names whose channels stay")
    pr.add_argument("--input-shape", action="append", default=[], metavar="NAME=DIMS", help=shape_help)
    pr.add_argument("--report", metavar="JSON", help="write a JSON report (costs, groups, verification, plan)")
    pr.add_argument("--plan", metavar="JSON", help="apply this pruning plan instead of choosing")
    pr.add_argument("--save-plan", metavar="JSON", help="write the pruning plan used")
    pr.add_argument("--eval", metavar="NPZ", help="labelled data (x, y) to report top-1 accuracy before and after")
    _interface_args(pr)
    cka = pr.add_argument_group("CKA-guided methods (--method layers)")
    cka.add_argument("--method", choices=("channels", "layers", "everything"), default="channels",
                     help="channels: magnitude criteria per group (default); layers: drop residual blocks by CKA; "
                          "everything: each iteration, a block or the same MACs of channels, whichever keeps CKA higher")
    cka.add_argument("--calib", metavar="DATA", help="calibration data: .npy, .npz (by input name, or x), or an image folder")
    cka.add_argument("--preprocess", metavar="SPEC", help="for an image folder, e.g. resize=32x32,mean=0.5,std=0.25,layout=NCHW")
    cka.add_argument("--samples", type=int, metavar="N", help="calibration samples to use (default: all), chosen with --seed")
    cka.add_argument("--batch-size", type=int, default=64, metavar="B", help="calibration batch size (default 64)")
    cka.add_argument("--seed", type=int, default=0, help="seed for choosing calibration samples (default 0)")
    cka.add_argument("--target-flops", type=float, metavar="R", help="stop once this fraction of MACs is removed")
    cka.add_argument("--target-params", type=float, metavar="R", help="stop once this fraction of parameters is removed")
    cka.add_argument("--target-blocks", type=int, metavar="N", help="stop after dropping N blocks")
    cka.add_argument("--min-blocks-per-stage", type=int, default=2, metavar="N", help="blocks every stage keeps (default 2)")
    cka.add_argument("--tap", action="append", default=[], metavar="VALUE",
                     help="representation to compare (default: the classifier's input); repeatable")
    cka.add_argument("--debiased", action="store_true", help="debiased CKA (default biased, as in the papers)")
    cka.add_argument("--target-latency", type=float, metavar="R",
                     help="everything: stop once ONNX Runtime latency (batch 1) fell by this fraction")
    cka.add_argument("--scope", choices=("internal", "all"), default="internal",
                     help="everything: neuron candidates from block-internal groups only (default, as in the paper) or all")
    cka.add_argument("--arbiter", choices=("cka", "layers", "neurons", "random"), default="cka",
                     help="everything: how to choose between the two candidates (default cka; others are baselines)")
    cka.add_argument("--fine-tune", metavar="FILE.py:FUNC",
                     help="everything: call FUNC(model) -> model after every iteration and at the end")
    cka.add_argument("--plot", metavar="PNG", help="write CKA and MACs against iteration (needs matplotlib)")

    ins = sub.add_parser("inspect", help="show channel groups, frozen reasons and costs")
    ins.add_argument("model", help="input .onnx file")
    ins.add_argument("--json", action="store_true", help="print JSON instead of text")
    ins.add_argument("--input-shape", action="append", default=[], metavar="NAME=DIMS", help=shape_help)
    ins.add_argument("--no-nodes", action="store_true", help="omit the per-node cost table")
    ins.add_argument("--blocks", action="store_true", help="list residual blocks (removable or why not) with their MACs")
    _interface_args(ins)
    return p


def _interface_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resize-io", action="append", default=[], metavar="NAME",
        help="a graph input or output whose static dims may shrink (e.g. a hidden-state output); repeatable",
    )
    parser.add_argument(
        "--keep-cache-shape", action="store_true",
        help="keep KV-cache inputs/outputs at their shape (their heads are then not pruned)",
    )


def _shapes(specs: list[str]) -> dict:
    from onnxprune.model_io import parse_input_shape

    return dict(parse_input_shape(s) for s in specs)


def _run_prune(args) -> int:
    from onnxprune.compiler.driver import run
    from onnxprune.compiler.workspace import Options

    _check_prune_args(args)
    labelled = None
    if args.eval:
        from onnxprune.runtime.evaluate import load_labelled

        labelled = load_labelled(args.eval)
    strategy = _strategy(args)
    options = Options(
        input_shapes=_shapes(args.input_shape), ignore=tuple(args.ignore), resize_io=tuple(args.resize_io),
        resize_cache=not args.keep_cache_shape,
    )
    result = run(strategy, args.model, options)
    if labelled is not None:
        from onnxprune.model_io import load_model
        from onnxprune.runtime.evaluate import accuracy

        result.report["accuracy"] = {
            "data": args.eval,
            "before": accuracy(load_model(args.model), *labelled),
            "after": accuracy(result.model, *labelled),
        }
    if args.plot:
        from onnxprune.tools.plot_run import plot_run

        plot_run(result.report, args.plot)
    _write(args, result)
    _print_summary(args, result.report)
    return 0


def _check_prune_args(args) -> None:
    if not 0.0 <= args.ratio < 1.0:
        raise OnnxPruneError(f"--ratio must be in [0, 1), got {args.ratio}")
    for kind in ("heads", "hidden", "channels"):
        r = getattr(args, kind)
        if r is not None and not 0.0 <= r < 1.0:
            raise OnnxPruneError(f"--{kind} must be in [0, 1), got {r}")
    if args.round_to < 1:
        raise OnnxPruneError(f"--round-to must be at least 1, got {args.round_to}")
    if args.output.endswith(("/", os.sep)) or os.path.isdir(args.output):
        raise OnnxPruneError(f"-o {args.output} is a directory: name the output file, e.g. {os.path.join(args.output, 'pruned.onnx')}")
    for flag, path in (("-o", args.output), ("--report", args.report), ("--save-plan", args.save_plan),
                       ("--plot", args.plot)):
        if path:
            where = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(where):
                raise OnnxPruneError(f"{flag}: directory {where} does not exist: create it first")


def _strategy(args):
    """The strategy the command line asks for (a saved plan, or --method)."""
    if args.plan:
        from onnxprune.compiler.channels import PlanStrategy
        from onnxprune.compiler.plan import PruningPlan

        if args.method != "channels":
            raise OnnxPruneError("--plan replays a saved plan (its channels, then its blocks): drop --method")
        return PlanStrategy(PruningPlan.load(args.plan))
    if args.method in ("layers", "everything"):
        return _cka_strategy(args)
    from onnxprune.compiler.channels import ChannelsStrategy

    if args.criterion == "activation":
        raise OnnxPruneError("--criterion activation needs calibration data: use it with --method everything --calib DATA")
    kind_ratios = {k: getattr(args, k) for k in ("heads", "hidden", "channels") if getattr(args, k) is not None}
    return ChannelsStrategy(args.ratio, args.criterion, args.global_ranking, args.round_to, kind_ratios)


def _cka_strategy(args):
    from onnxprune.compiler.everything import EverythingStrategy
    from onnxprune.compiler.layers import LayersStrategy
    from onnxprune.compiler.target import Target
    from onnxprune.model_io import load_model
    from onnxprune.runtime.calibration import load_calibration

    if not args.calib:
        raise OnnxPruneError(f"--method {args.method} needs calibration data: pass --calib DATA (.npy, .npz or an image folder)")
    if args.min_blocks_per_stage < 0:
        raise OnnxPruneError(f"--min-blocks-per-stage must be >= 0, got {args.min_blocks_per_stage}")
    target = Target(flops=args.target_flops, params=args.target_params, blocks=args.target_blocks)
    if args.method == "layers" or args.target_latency is None:
        target.check()
    fine_tune = _load_hook(args.fine_tune) if args.fine_tune else None
    calib = load_calibration(
        args.calib, load_model(args.model), samples=args.samples, batch_size=args.batch_size,
        seed=args.seed, preprocess=args.preprocess, input_shapes=_shapes(args.input_shape),
    )
    common = dict(min_per_stage=args.min_blocks_per_stage, taps=args.tap or None, debiased=args.debiased)
    if args.method == "layers":
        return LayersStrategy(calib, target, **common)
    return EverythingStrategy(
        calib, target, criterion=args.criterion, arbiter=args.arbiter, scope=args.scope, fine_tune=fine_tune,
        latency_target=args.target_latency, seed=args.seed, **common,
    )


def _write(args, result) -> None:
    from onnxprune.compiler.plan import write_json_atomic
    from onnxprune.model_io import save_model

    save_model(result.model, args.output)
    if args.save_plan:
        result.plan.save(args.save_plan)
    if args.report:
        write_json_atomic(args.report, {**result.report, "plan": result.plan.to_dict()})


def _print_summary(args, report: dict) -> None:
    from onnxprune.tools.inspect_text import human

    c = report["cost"]
    print(
        f"{args.model} -> {args.output}: MACs {human(c['before']['macs'])} -> {human(c['after']['macs'])} "
        f"(-{100 * c['macs_reduction']:.1f} %), params {human(c['before']['params'])} -> "
        f"{human(c['after']['params'])} (-{100 * c['params_reduction']:.1f} %); {_what(report)}; verified with ONNX Runtime"
    )
    for change in report["interface"]:
        print(
            f"{change['direction']} '{change['name']}' changes shape "
            f"{_dims(change['shape_before'])} -> {_dims(change['shape_after'])}: callers must follow"
        )
    lat = report.get("latency")
    if lat:
        print(
            f"ONNX Runtime latency (batch 1, 1 thread): {1e3 * lat['before_s']:.3f} ms -> {1e3 * lat['after_s']:.3f} ms "
            f"({lat['speedup']:.2f}x)"
        )
    acc = report.get("accuracy")
    if acc is not None:
        print(f"top-1 accuracy on {args.eval}: {100 * acc['before']:.2f} % -> {100 * acc['after']:.2f} % (no fine-tuning)")


def _what(report: dict) -> str:
    """What a run removed, in the words of its method."""
    b, g = report["blocks"], report["groups"]
    if report["method"] == "layers":
        return f"{b['dropped']} of {b['removable']} removable residual blocks dropped by CKA"
    if report["method"] == "everything":
        ch = report["chosen"]
        return f"{ch['layers'] + ch['neurons']} iterations: {ch['layers']} blocks dropped, {ch['neurons']} channel steps"
    parts = []
    if g is not None:
        parts.append(
            f"{g['channels_removed']} units (channels, neurons or heads) removed from {g['prunable']} of {g['total']} groups"
        )
    if b is not None:
        parts.append(f"{b['dropped']} residual blocks dropped")
    return ", ".join(parts) or "nothing removed"


def _dims(shape: list) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _load_hook(spec: str):
    """FILE.py:FUNC or package.module:FUNC -> the function."""
    import importlib
    import importlib.util

    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise OnnxPruneError(f"--fine-tune wants FILE.py:FUNC or module:FUNC, got {spec!r}")
    try:
        if where.endswith(".py"):
            if not os.path.isfile(where):
                raise OnnxPruneError(f"--fine-tune: no file {where}")
            loaded = importlib.util.spec_from_file_location("onnxprune_fine_tune", where)
            module = importlib.util.module_from_spec(loaded)
            loaded.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except OnnxPruneError:
        raise
    except Exception as err:  # the user's code: say where it failed, in one line
        raise OnnxPruneError(f"--fine-tune: could not load {where}: {type(err).__name__}: {err}") from err
    hook = getattr(module, name, None)
    if not callable(hook):
        raise OnnxPruneError(f"--fine-tune: {where} has no function {name!r}")
    return hook


def _run_inspect(args) -> int:
    from onnxprune.compiler.pipeline import inspect
    from onnxprune.tools.inspect_text import render

    info = inspect(
        args.model, input_shapes=_shapes(args.input_shape),
        resize_io=tuple(args.resize_io), resize_cache=not args.keep_cache_shape,
    )
    blocks_text = None
    if args.blocks:
        info["blocks"], blocks_text = _blocks_info(args)
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        print(render(info, show_nodes=not args.no_nodes))
        if blocks_text:
            print()
            print(blocks_text)
    return 0


def _blocks_info(args) -> tuple[list[dict], str]:
    """Residual blocks of the model as JSON rows and as the text table."""
    from onnxprune.compiler.workspace import Options, Workspace
    from onnxprune.passes.blocks import block_macs
    from onnxprune.tools.inspect_blocks import blocks_json, render_blocks

    ws = Workspace(args.model, Options(input_shapes=_shapes(args.input_shape)))
    costs = block_macs(ws.model, ws.blocks, ws.shapes)
    total = ws.cost_before().total_macs
    return blocks_json(ws.blocks, costs, total_macs=total), render_blocks(ws.blocks, costs, total_macs=total)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run_prune(args) if args.command == "prune" else _run_inspect(args)
    except OnnxPruneError as e:
        print(f"onnxprune: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `onnxprune inspect m.onnx | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("onnxprune: interrupted", file=sys.stderr)
        return 1
    except Exception as e:  # an unexpected failure is still one line, never a half file
        if os.environ.get("ONNXPRUNE_DEBUG"):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(
            f"onnxprune: internal error: {type(e).__name__}: {first[:300]} "
            "(set ONNXPRUNE_DEBUG=1 for a traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
