"""Command line: `onnxprune prune` and `onnxprune inspect`.

Exit codes: 0 done (model, plan and report written together); 1 failed (one line on
stderr, no traceback, nothing written); 2 bad usage (one line); 3 done, but a target
(--target-flops, --target-params, --target-blocks, --target-latency) was not reached:
everything is written and one line on stderr says why and what to do.

SIGINT, SIGTERM and SIGHUP stop a run the same way: one line, exit 1, nothing written
(staged files are removed). Once the outputs are being renamed into place (the last
milliseconds of a run) an interrupt is ignored and the run completes. Set
ONNXPRUNE_DEBUG=1 to see tracebacks of unexpected errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys

from onnxprune.cli_args import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TARGET_MISSED,
    EXIT_USAGE,
    UsageError,
    parser,
)
from onnxprune.errors import OnnxPruneError

_INTERRUPT_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))
_committing = False  # set while the outputs are renamed into place


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
    calib = _calibration(args)
    strategy = _strategy(args, calib, labelled)
    options = Options(
        input_shapes=_shapes(args.input_shape), ignore=tuple(args.ignore), resize_io=tuple(args.resize_io),
        resize_cache=not args.keep_cache_shape, calibration=calib,
        recover=("ls" if calib is not None else "synthetic") if args.recover == "auto" else args.recover,
    )
    try:
        result = run(strategy, args.model, options)
    finally:
        pool = getattr(strategy, "pool", None)
        if pool is not None:  # Ray workers end with the search
            pool.close()
    if labelled is not None:
        from onnxprune.model_io import load_model
        from onnxprune.runtime.evaluate import accuracy

        result.report["accuracy"] = {
            "data": args.eval,
            "before": accuracy(load_model(args.model), *labelled),
            "after": accuracy(result.model, *labelled),
        }
    _write(args, result)
    _print_summary(args, result.report)
    if result.report.get("target_reached") is False:
        print(f"onnxprune: target not reached: {result.report['stopped_because']}", file=sys.stderr)
        return EXIT_TARGET_MISSED
    return EXIT_OK


def _check_prune_args(args) -> None:
    """Paths checked before any work, so a run never fails after writing something."""
    if args.output.endswith(("/", os.sep)) or os.path.isdir(args.output):
        raise OnnxPruneError(f"-o {args.output} is a directory: name the output file, e.g. {os.path.join(args.output, 'pruned.onnx')}")
    for flag, path in (("-o", args.output), ("--report", args.report), ("--save-plan", args.save_plan),
                       ("--plot", args.plot), ("--html", args.html)):
        if path:
            _check_output(flag, path)
    outputs = [os.path.abspath(p) for p in (args.output, args.report, args.save_plan, args.plot, args.html) if p]
    if len(set(outputs)) < len(outputs):
        raise UsageError("-o, --report, --save-plan, --plot and --html must name different files")


def _check_output(flag: str, path: str) -> None:
    """An output file's directory must exist and the path must not be a directory."""
    where = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(where):
        raise OnnxPruneError(f"{flag}: directory {where} does not exist: create it first")
    if os.path.isdir(path):
        raise OnnxPruneError(f"{flag} {path} is a directory: name a file in it")


def _calibration(args):
    """The --calib data (None without it), loaded once for the method and for recovery."""
    if not args.calib:
        if args.recover in ("ls", "bias", "sequential"):
            raise UsageError(f"--recover {args.recover} refits from calibration data: pass --calib DATA")
        return None
    from onnxprune.model_io import load_model
    from onnxprune.runtime.calibration import load_calibration

    return load_calibration(
        args.calib, load_model(args.model), samples=args.samples, batch_size=args.batch_size,
        seed=args.seed, preprocess=args.preprocess, input_shapes=_shapes(args.input_shape),
    )


def _strategy(args, calib, labelled=None):
    """The strategy the command line asks for (a saved plan, or --method)."""
    if args.plan:
        from onnxprune.compiler.channels import PlanStrategy
        from onnxprune.compiler.plan import PruningPlan

        if args.method != "channels":
            raise UsageError("--plan replays a saved plan (its channels, then its blocks): drop --method")
        return PlanStrategy(PruningPlan.load(args.plan))
    if args.method in ("layers", "everything"):
        return _cka_strategy(args, calib, labelled)
    from onnxprune.compiler.channels import ChannelsStrategy

    if args.workers > 1 or args.ray:
        raise UsageError("--workers and --ray score search candidates: use them with --method layers or everything")
    if args.criterion == "activation":
        raise UsageError("--criterion activation needs calibration data: use it with --method everything --calib DATA")
    if args.criterion in ("wanda", "fluctuation", "obs", "kl") and calib is None:
        raise UsageError(f"--criterion {args.criterion} scores channels on calibration data: pass --calib DATA")
    kind_ratios = {k: getattr(args, k) for k in ("heads", "hidden", "channels") if getattr(args, k) is not None}
    return ChannelsStrategy(args.ratio, args.criterion, args.global_ranking, args.round_to, kind_ratios)


def _cka_strategy(args, calib, labelled=None):
    from onnxprune.compiler.everything import EverythingStrategy
    from onnxprune.compiler.layers import LayersStrategy
    from onnxprune.compiler.target import Target

    if args.criterion in ("wanda", "fluctuation", "obs", "kl"):
        raise UsageError(f"--criterion {args.criterion} is for --method channels (everything scores by l1, l2, bn or activation)")
    if calib is None:
        raise UsageError(f"--method {args.method} needs calibration data: pass --calib DATA (.npy, .npz or an image folder)")
    target = Target(flops=args.target_flops, params=args.target_params, blocks=args.target_blocks)
    if args.method == "layers" or args.target_latency is None:
        try:
            target.check()
        except OnnxPruneError as err:
            raise UsageError(str(err)) from None
    fine_tune = _load_hook(args.fine_tune) if args.fine_tune else None
    common = dict(min_per_stage=args.min_blocks_per_stage, taps=args.tap or None, debiased=args.debiased,
                  pool=_pool(args))
    if args.method == "layers":
        return LayersStrategy(calib, target, **common)
    evaluate = None
    if labelled is not None:  # --eval: each iteration's accuracy in the report (and the page's chart)
        from onnxprune.runtime.evaluate import accuracy

        def evaluate(model):
            return accuracy(model, *labelled)
    return EverythingStrategy(
        calib, target, criterion="l1" if args.criterion == "auto" else args.criterion, arbiter=args.arbiter, scope=args.scope, fine_tune=fine_tune,
        latency_target=args.target_latency, seed=args.seed, evaluate=evaluate, neuron_steps=args.neuron_steps, **common,
    )


def _pool(args):
    """Ray workers for the candidates (--workers N > 1, or --ray ADDRESS), or None."""
    if args.workers <= 1 and not args.ray:
        return None
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UsageError("--workers and --ray need Ray: pip install onnxprune[ray]") from None
    from onnxprune.runtime.distributed import WorkerPool

    return WorkerPool(args.workers if args.workers > 1 else None, args.ray)  # --ray alone: the cluster's CPUs


def _write(args, result) -> None:
    """Model, plan, report and plot: all staged first, then renamed into place together
    (an interrupt during the renames is ignored), or none of them."""
    global _committing
    from onnxprune.model_io import StagedOutputs

    page = None
    if args.html:  # built before anything is staged: a failure here writes nothing
        from onnxprune.tools.html_page import prune_page

        page = prune_page(args.model, result, input_shapes=_shapes(args.input_shape),
                          resize_io=tuple(args.resize_io), resize_cache=not args.keep_cache_shape)
    with StagedOutputs() as out:
        out.model(result.model, args.output)
        if page is not None:
            from onnxprune.tools.html_page import write_page

            out.add(args.html, lambda tmp: write_page(page, tmp))
        if args.save_plan:
            out.json(args.save_plan, result.plan.to_dict())
        if args.report:
            out.json(args.report, {**result.report, "plan": result.plan.to_dict()})
        if args.plot:
            from onnxprune.tools.plot_run import plot_run

            out.add(args.plot, lambda tmp: plot_run(result.report, tmp))
        _committing = True
        try:
            out.commit()
        finally:
            _committing = False


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
    print(_recovery_line(report))
    acc = report.get("accuracy")
    if acc is not None:
        print(f"top-1 accuracy on {args.eval}: {100 * acc['before']:.2f} % -> {100 * acc['after']:.2f} % (no fine-tuning)")


def _recovery_line(report: dict) -> str:
    """Which recovery ran (the README's contract: the output says so)."""
    rec = report["recovery"]
    if rec["ran"] is None:
        why = rec["why_not"].replace("recover='none'", "--recover none")
        return f"recovery: none: {why}"
    layers = rec["layers"]
    fitted = [r for r in layers if r["error_after"] is not None]
    refit = [r for r in layers if r["refit"] is not None]
    how = rec["ran"].replace("bias, batchnorm statistics", "bias").replace("bias", "bias compensation")
    how = how.replace("block fold", "block compensation folded")
    if rec["data"] == "batchnorm statistics":
        source = "the model's BatchNorm running statistics (data-free; --calib DATA refits on real data)"
    elif rec["data"] == "synthesized":
        source = f"{rec['calibration_samples']} synthesized inputs (data-free; --calib DATA refits on real data)"
    else:
        source = f"{rec['calibration_samples']} calibration samples"
    line = f"recovery: {how} on {len(refit)} layers from {source}"
    if len(refit) < len(layers):
        line += f"; {len(layers) - len(refit)} not refit (see the report)"
    if fitted:
        before = sum(r["error_before"] for r in fitted) / len(fitted)
        after = sum(r["error_after"] for r in fitted) / len(fitted)
        line += f" (their output error {before:.3g} -> {after:.3g}, mean relative)"
    skipped = rec.get("blocks_not_compensated") or []
    if skipped:
        line += f"; {len(skipped)} run(s) of dropped blocks not compensated (see the report)"
    return line


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

    if args.html:  # the page's analysis serves the printed answer too
        from onnxprune.compiler.pipeline import describe

        info = describe(_write_inspect_page(args))
    else:
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


def _write_inspect_page(args):
    """`inspect --html PAGE`: the page, written whole or not at all; returns the
    Workspace it analysed."""
    from onnxprune.model_io import StagedOutputs
    from onnxprune.tools.html_page import write_page
    from onnxprune.tools.page_data import graph_data

    _check_output("--html", args.html)
    data, ws = graph_data(args.model, input_shapes=_shapes(args.input_shape), resize_io=tuple(args.resize_io),
                          resize_cache=not args.keep_cache_shape)
    with StagedOutputs() as out:
        out.add(args.html, lambda tmp: write_page(data, tmp))
        out.commit()
    print(f"page: {args.html} ({len(data['groups'])} channel groups, {len(data['blocks'])} residual blocks)",
          file=sys.stderr)
    return ws


def _blocks_info(args) -> tuple[list[dict], str]:
    """Residual blocks of the model as JSON rows and as the text table."""
    from onnxprune.compiler.workspace import Options, Workspace
    from onnxprune.passes.blocks import block_macs
    from onnxprune.tools.inspect_blocks import blocks_json, render_blocks

    ws = Workspace(args.model, Options(input_shapes=_shapes(args.input_shape)))
    costs = block_macs(ws.model, ws.blocks, ws.shapes)
    total = ws.cost_before().total_macs
    return blocks_json(ws.blocks, costs, total_macs=total), render_blocks(ws.blocks, costs, total_macs=total)


def _run_sweep(args) -> int:
    from onnxprune.tools.sweep import sweep, table

    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise UsageError(f"-o {args.output} is a file: name a directory for the runs")
    rows, code = sweep(args, main)
    print(table(rows))
    print(f"summary: {os.path.join(args.output, 'summary.json')}")
    return code


def _on_signal(signum, frame) -> None:
    if not _committing:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_interrupt():
    """SIGTERM and SIGHUP end a run like SIGINT: through KeyboardInterrupt, so staged
    files are cleaned up (only the main thread can install handlers)."""
    try:
        previous = {s: signal.signal(s, _on_signal) for s in _INTERRUPT_SIGNALS}
    except ValueError:  # not the main thread: leave the handlers alone
        previous = {}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(argv: list[str] | None = None) -> int:
    with _signals_interrupt():
        try:
            try:
                args = parser().parse_args(argv)
            except SystemExit as done:  # bad usage (one line already printed), or --help
                return done.code if isinstance(done.code, int) else EXIT_USAGE
            if args.command == "sweep":
                return _run_sweep(args)
            return _run_prune(args) if args.command == "prune" else _run_inspect(args)
        except UsageError as e:
            print(f"onnxprune: error: {e} (usage: `onnxprune prune --help`)", file=sys.stderr)
            return EXIT_USAGE
        except OnnxPruneError as e:
            print(f"onnxprune: error: {e}", file=sys.stderr)
            return EXIT_FAILED
        except BrokenPipeError:  # `onnxprune inspect m.onnx | head`: the reader left, not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
        except KeyboardInterrupt:
            print("onnxprune: interrupted: nothing was written", file=sys.stderr)
            return EXIT_FAILED
        except Exception as e:  # an unexpected failure is still one line, never a half file
            if os.environ.get("ONNXPRUNE_DEBUG"):
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            print(
                f"onnxprune: internal error: {type(e).__name__}: {first[:300]} "
                "(set ONNXPRUNE_DEBUG=1 for a traceback, and please report it)",
                file=sys.stderr,
            )
            return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
