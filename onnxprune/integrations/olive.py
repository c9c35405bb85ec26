"""onnxprune as an Olive pass (olive-ai >= 0.13): `OnnxPrune`.

Olive finds a pass through its package config: a JSON object mapping each pass type to
the class's module path. `olive run --package-config FILE` and
`olive.workflows.run(config, package_config=...)` replace Olive's own list with the one
given, so `package_config()` returns Olive's list with `OnnxPrune` added (write it to a
file with `python -m onnxprune.integrations.olive olive_package.json`). Then a workflow
uses it like any other pass:

    "passes": {"prune": {"type": "OnnxPrune", "method": "everything", "target_flops": 0.2,
                         "calibration": "calib.npz"}}

The parameters mirror `onnxprune prune` (README "Use"). The pruned model is written with
`save_model` into the pass's output folder, with the onnxprune JSON report next to it
(`report_name`), listed in the model's `additional_files` so that later passes and
Olive's output folder keep it. A bad value fails before any work with one line saying
what is wrong and what to do (`OnnxPruneConfigError`, a ValueError: Olive re-raises
those even while searching, instead of recording a failed run).

Only this module imports olive: `import onnxprune` never does.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import sys
from pathlib import Path

from olive.hardware.accelerator import AcceleratorSpec
from olive.model import ONNXModelHandler
from olive.model.utils import resolve_onnx_path
from olive.passes import Pass
from olive.passes.pass_config import BasePassConfig, ParamCategory, PassConfigParam
from pydantic import ValidationError

from onnxprune.cli_args import CRITERIA, KIND_RATIOS, METHODS
from onnxprune.compiler.data_importance import DATA_CRITERIA
from onnxprune.compiler.recover import MODES as RECOVER_MODES
from onnxprune.errors import OnnxPruneError

__all__ = ["PACKAGE_ENTRY", "OnnxPrune", "OnnxPruneConfigError", "package_config"]

# Under "olive" so that the summary shows in Olive's log, which configures only its own loggers.
logger = logging.getLogger("olive.passes.onnxprune")

CALIBRATION_SUFFIXES = (".npy", ".npz")
KINDS = tuple(kind for kind, _ in KIND_RATIOS)  # per-kind ratios, as --heads/--hidden/--channels

# The entry Olive's package config needs for this pass ("*": any provider, accelerator, precision).
PACKAGE_ENTRY = {
    "module_path": "onnxprune.integrations.olive.OnnxPrune",
    "supported_providers": ["*"],
    "supported_accelerators": ["*"],
    "supported_precisions": ["*"],
    "supported_algorithms": [],
    "supported_quantization_encodings": [],
}


class OnnxPruneConfigError(OnnxPruneError, ValueError):
    """A pass parameter that is wrong: one line, naming the parameter and the fix."""


def package_config() -> dict:
    """Olive's default package config plus `OnnxPrune` (Olive uses the one it is given
    instead of its own, so its passes must stay listed)."""
    from olive.package_config import OlivePackageConfig

    with open(OlivePackageConfig.get_default_config_path()) as f:
        config = json.load(f)
    config["passes"]["OnnxPrune"] = dict(PACKAGE_ENTRY)
    return config


class OnnxPrune(Pass):
    """Structured pruning with onnxprune: channels by a criterion and ratio, or residual
    blocks (`layers`) or blocks and channels (`everything`) guided by CKA on calibration
    data, to a target. The output is verified (ONNX checker, ONNX Runtime, same interface)."""

    @classmethod
    def _default_config(cls, accelerator_spec: AcceleratorSpec) -> dict[str, PassConfigParam]:
        return {
            "method": PassConfigParam(
                type_=str, default_value="channels",
                description="channels (ratio of every channel group), layers (drop residual blocks) or everything "
                            "(blocks and channels at once); layers and everything need calibration and a target.",
            ),
            "ratio": PassConfigParam(
                type_=float, default_value=0.5,
                description="channels: fraction of each group's channels to remove, in [0, 1).",
            ),
            "criterion": PassConfigParam(
                type_=str, default_value="auto",
                description=f"how channels are ranked: {', '.join(CRITERIA)}. auto: fluctuation with calibration, "
                            "l1 without (channels); l1 (everything).",
            ),
            **{kind: PassConfigParam(type_=float, default_value=None,
                                     description=f"channels: ratio for {what}, in [0, 1) (default: ratio).")
               for kind, what in KIND_RATIOS},
            "global_ranking": PassConfigParam(
                type_=bool, default_value=False, description="channels: rank channels across all groups at once.",
            ),
            "round_to": PassConfigParam(
                type_=int, default_value=1, description="channels: keep a multiple of this many channels per group.",
            ),
            "ignore": PassConfigParam(
                type_=list[str], default_value=None, description="node names whose channels stay.",
            ),
            "target_flops": PassConfigParam(
                type_=float, default_value=None,
                description="layers/everything: stop once this fraction of MACs is removed, in (0, 1).",
            ),
            "target_params": PassConfigParam(
                type_=float, default_value=None,
                description="layers/everything: stop once this fraction of parameters is removed, in (0, 1).",
            ),
            "target_blocks": PassConfigParam(
                type_=int, default_value=None, description="layers/everything: stop after dropping this many blocks.",
            ),
            "calibration": PassConfigParam(
                type_=str, default_value=None, category=ParamCategory.PATH,
                description="calibration samples: a .npy (one input) or .npz (arrays keyed by input name) file.",
            ),
            **_data_params(),
        }

    @classmethod
    def generate_config(cls, accelerator_spec, config=None, point=None, disable_search=False):
        """Olive's config, checked here: the engine builds every pass's config before it
        runs any pass, so a bad value fails the workflow before any work."""
        if isinstance(config, dict):  # Olive only warns about unknown keys: a typo would run the defaults
            known = set(cls.default_config(accelerator_spec))
            for key in config:
                if key not in known:
                    close = difflib.get_close_matches(key, known, n=1)
                    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
                    raise OnnxPruneConfigError(f"OnnxPrune: unknown parameter {key!r}: {hint}")
        try:
            generated = super().generate_config(accelerator_spec, config, point, disable_search)
        except ValidationError as err:  # pydantic's many lines (one per member of the Union) -> one
            first = {}
            for e in err.errors():
                first.setdefault(e["loc"][0], f"{e['loc'][0]}: {e['msg']} (got {e['input']!r})")
            raise OnnxPruneConfigError(f"OnnxPrune: {'; '.join(first.values())}") from None
        check_config(generated)
        return generated

    def _run_for_config(
        self, model: ONNXModelHandler, config: type[BasePassConfig], output_model_path: str
    ) -> ONNXModelHandler:
        from onnxprune.compiler.driver import run
        from onnxprune.compiler.workspace import Options
        from onnxprune.model_io import load_model, save_model, write_json_atomic

        if not isinstance(model, ONNXModelHandler):
            raise OnnxPruneConfigError(
                f"OnnxPrune prunes ONNX models, got {type(model).__name__}: put a conversion pass "
                "(e.g. OnnxConversion) before it"
            )
        source = model.model_path
        shapes = {name: tuple(dims) for name, dims in (config.input_shapes or {}).items()}
        calib = None
        if config.calibration:
            from onnxprune.runtime.calibration import load_calibration

            calib = load_calibration(
                config.calibration, load_model(source), samples=config.samples, batch_size=config.batch_size,
                seed=config.seed, input_shapes=shapes,
            )
        recover = config.recover
        if recover == "auto":  # as the CLI: refit on synthesized inputs when there is no data
            recover = "ls" if calib is not None else "synthetic"
        options = Options(input_shapes=shapes, ignore=tuple(config.ignore or ()), calibration=calib, recover=recover)
        result = run(_strategy(config, calib), source, options)
        if config.eval:  # as the CLI's --eval
            from onnxprune.runtime.evaluate import accuracy, load_labelled

            labelled = load_labelled(config.eval)
            result.report["accuracy"] = {"data": str(config.eval), "before": accuracy(load_model(source), *labelled),
                                         "after": accuracy(result.model, *labelled)}

        output_path = Path(resolve_onnx_path(output_model_path, Path(source).name))
        output_dir = output_path.parent
        save_model(result.model, output_path)
        attributes = dict(model.model_attributes or {})
        if config.report_name:
            report_path = output_dir / config.report_name
            write_json_atomic(report_path, {**result.report, "plan": result.plan.to_dict()})
            files = set(attributes.get("additional_files") or []) | {str(report_path)}
            attributes["additional_files"] = sorted(files)
        _log_summary(source, result.report)
        # A folder, not the file: the report (and any external data) must travel with the model.
        return ONNXModelHandler(
            model_path=str(output_dir), onnx_file_name=output_path.name,
            inference_settings=model.inference_settings, model_attributes=attributes or None,
        )


def _data_params() -> dict[str, PassConfigParam]:
    """The pass's parameters about data, recovery and output (the rest: `_default_config`)."""
    return {
        "samples": PassConfigParam(
            type_=int, default_value=None,
            description="calibration samples to use (default: all), chosen with seed.",
        ),
        "batch_size": PassConfigParam(type_=int, default_value=64, description="calibration batch size."),
        "seed": PassConfigParam(type_=int, default_value=0, description="seed for choosing calibration samples."),
        "recover": PassConfigParam(
            type_=str, default_value="auto",
            description=f"how the cut is repaired without training: {', '.join(RECOVER_MODES)}. auto: least "
                        "squares on the calibration data, or on synthesized inputs without it.",
        ),
        "input_shapes": PassConfigParam(
            type_=dict[str, list[int]], default_value=None,
            description="input name -> dims, for inputs with symbolic dims, e.g. {\"input\": [1, 3, 224, 224]}.",
        ),
        "plan": PassConfigParam(
            type_=str, default_value=None, category=ParamCategory.PATH,
            description="apply this saved pruning plan (JSON, from --save-plan or a report's plan) instead "
                        "of searching: its channels, then its blocks (as --plan).",
        ),
        "eval": PassConfigParam(
            type_=str, default_value=None, category=ParamCategory.PATH,
            description="labelled data (.npz with x and y): top-1 accuracy before and after in the report "
                        "(as --eval).",
        ),
        "report_name": PassConfigParam(
            type_=str, default_value="onnxprune_report.json",
            description="file name of the onnxprune JSON report written next to the output model; null: none.",
        ),
    }


def check_config(config) -> None:
    """Every value and combination, before any work; one line each (what to set)."""

    def fail(message: str):
        raise OnnxPruneConfigError(f"OnnxPrune: {message}")

    if config.method not in METHODS:
        fail(f"method must be one of {', '.join(METHODS)}, got {config.method!r}")
    if config.criterion not in CRITERIA:
        fail(f"criterion must be one of {', '.join(CRITERIA)}, got {config.criterion!r}")
    if config.recover not in RECOVER_MODES:
        fail(f"recover must be one of {', '.join(RECOVER_MODES)}, got {config.recover!r}")
    if not _in_range(config.ratio, low_open=False):
        fail(f"ratio is the fraction of channels to remove, in [0, 1): got {config.ratio}")
    for name in KINDS:
        value = getattr(config, name)
        if value is not None and not _in_range(value, low_open=False):
            fail(f"{name} is the fraction of {name} units to remove, in [0, 1): got {value}")
    for name in ("target_flops", "target_params"):
        value = getattr(config, name)
        if value is not None and not _in_range(value, low_open=True):
            fail(f"{name} is the fraction to remove, in (0, 1): got {value}")
    for name, minimum in (("target_blocks", 1), ("round_to", 1), ("samples", 1), ("batch_size", 1)):
        value = getattr(config, name)
        if value is not None and value < minimum:
            fail(f"{name} must be at least {minimum}, got {value}")
    if config.calibration is not None:
        path = str(config.calibration)
        if not path.endswith(CALIBRATION_SUFFIXES):
            fail(f"calibration must be a .npy or .npz file, got {path}")
        if not os.path.isfile(path):
            fail(f"calibration file {path} does not exist: give the path of a .npy or .npz file")
    for name, dims in (config.input_shapes or {}).items():
        if not dims or any(d < 1 for d in dims):
            fail(f"input_shapes[{name!r}] must list positive dims, e.g. [1, 3, 224, 224], got {dims}")
    if config.report_name is not None and (not config.report_name or os.path.basename(config.report_name) != config.report_name):
        fail(f"report_name is a file name written next to the output model (no folders), got {config.report_name!r}")

    for name in ("plan", "eval"):
        path = getattr(config, name)
        if path is not None and not os.path.isfile(str(path)):
            fail(f"{name} file {path} does not exist: give the path of a {'.json plan' if name == 'plan' else '.npz'}")
    if config.plan is not None and (config.method != "channels" or config.ratio != 0.5):
        fail("plan replays a saved plan (its channels, then its blocks): leave method and ratio at their defaults")
    has_data = config.calibration is not None
    targets = [n for n in ("target_flops", "target_params", "target_blocks") if getattr(config, n) is not None]
    if config.recover in ("ls", "bias", "sequential") and not has_data:
        fail(f"recover {config.recover} refits from calibration data: set calibration to a .npy or .npz file")
    if config.method != "channels" and any(getattr(config, k) is not None for k in KINDS):
        fail(f"heads, hidden and channels are ratios for method channels, not {config.method}")
    if config.method == "channels":
        if targets:
            fail(f"{targets[0]} is for method layers or everything: set method, or use ratio with channels")
        if config.criterion == "activation":
            fail("criterion activation needs method everything with calibration")
        if config.criterion in DATA_CRITERIA and not has_data:
            fail(f"criterion {config.criterion} scores channels on calibration data: set calibration to a .npy or .npz file")
        return
    if config.criterion in DATA_CRITERIA:
        fail(f"criterion {config.criterion} is for method channels ({config.method} ranks by l1, l2, bn or activation)")
    if not has_data:
        fail(f"method {config.method} needs calibration data: set calibration to a .npy or .npz file")
    if not targets:
        fail(f"method {config.method} needs a target: set target_flops, target_params or target_blocks")


def _in_range(value: float, *, low_open: bool) -> bool:
    low_ok = value > 0 if low_open else value >= 0
    return not math.isnan(value) and low_ok and value < 1


def _strategy(config, calib):
    """The strategy `onnxprune prune` builds for the same settings (cli.py)."""
    if config.plan:
        from onnxprune.compiler.channels import PlanStrategy
        from onnxprune.compiler.plan import PruningPlan

        return PlanStrategy(PruningPlan.load(config.plan))
    if config.method == "channels":
        from onnxprune.compiler.channels import ChannelsStrategy

        kind_ratios = {k: getattr(config, k) for k in KINDS if getattr(config, k) is not None}
        return ChannelsStrategy(config.ratio, config.criterion, config.global_ranking, config.round_to, kind_ratios)
    from onnxprune.compiler.target import Target

    target = Target(flops=config.target_flops, params=config.target_params, blocks=config.target_blocks)
    if config.method == "layers":
        from onnxprune.compiler.layers import LayersStrategy

        return LayersStrategy(calib, target)
    from onnxprune.compiler.everything import EverythingStrategy

    criterion = "l1" if config.criterion == "auto" else config.criterion
    return EverythingStrategy(calib, target, criterion=criterion, seed=config.seed)


def _log_summary(source: str, report: dict) -> None:
    cost = report["cost"]
    logger.info(
        "onnxprune %s on %s: MACs -%.1f %%, params -%.1f %%, verified with ONNX Runtime",
        report["method"], source, 100 * cost["macs_reduction"], 100 * cost["params_reduction"],
    )
    if report.get("target_reached") is False:  # the CLI's exit 3: the model is still valid, and kept
        logger.warning("onnxprune: target not reached: %s", report["stopped_because"])


if __name__ == "__main__":  # python -m onnxprune.integrations.olive olive_package.json
    if len(sys.argv) != 2:
        sys.exit("usage: python -m onnxprune.integrations.olive PACKAGE_CONFIG.json")
    from onnxprune.model_io import write_json_atomic

    write_json_atomic(sys.argv[1], package_config())
    print(f"wrote {sys.argv[1]}: pass it to `olive run --package-config {sys.argv[1]}`")
