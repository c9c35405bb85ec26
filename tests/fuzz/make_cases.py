"""Hand-minimised reproducers of what the fuzzer found, written to tests/fuzz/cases/.

    python tests/fuzz/make_cases.py     # (re)writes cases/*.onnx and cases/cases.json

Each case is the smallest model found (by hand, from Hypothesis's shrunk examples) that
shows one distinct failure; cases.json gives the CLI arguments and what goes wrong.
test_cases.py runs the oracle on every case. "refuse-*" cases break no contract (exit 1
with one proper line) but are valid models the pruner should freeze rather than emit
wrongly and then refuse at verification.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"
F = onnx.TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits: dict, opset: int = 17) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    tensors = []
    for name, v in inits.items():
        if isinstance(v, tuple):
            v = (rng.standard_normal(v) / np.sqrt(max(1, int(np.prod(v[1:]))))).astype(np.float32)
        tensors.append(onh.from_array(np.asarray(v), name))
    graph = oh.make_graph(
        nodes, "case",
        [oh.make_tensor_value_info(n, F, s) for n, s in inputs],
        [oh.make_tensor_value_info(n, F, s) for n, s in outputs],
        tensors,
    )
    m = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def concat_input_output() -> onnx.ModelProto:
    """y = Concat(x, Conv1x1(x)) is a graph output: taken for a KV cache, so it shrinks."""
    return _model(
        [oh.make_node("Conv", ["x", "w"], ["h"], name="conv"),
         oh.make_node("Concat", ["x", "h"], ["y"], axis=1, name="concat")],
        [("x", [1, 3, 8, 8])], [("y", [1, 7, 8, 8])], {"w": (4, 3, 1, 1)},
    )


def concat_input_shrinks_input() -> onnx.ModelProto:
    """y = Concat(x, DepthwiseConv(x)) is a graph output: taken for a KV cache, x becomes
    resizable and the depthwise conv ties x's channels to its own, so the input shrinks."""
    return _model(
        [oh.make_node("Conv", ["x", "w"], ["h"], group=4, pads=[1, 1, 1, 1], name="dwconv"),
         oh.make_node("Concat", ["x", "h"], ["y"], axis=1, name="concat")],
        [("x", ["N", 4, 8, 8])], [("y", ["N", 8, 8, 8])], {"w": (4, 1, 3, 3)},
    )


def ort_log_on_stderr() -> onnx.ModelProto:
    """Channels moved to axis 2 by a Transpose, pooled over, then a Reshape with a constant
    size: the pruned model fails in ONNX Runtime during verification and ORT logs its own
    (coloured, multi-line) error on stderr before onnxprune's one line."""
    return _model(
        [oh.make_node("Conv", ["x", "w"], ["h"], name="conv"),
         oh.make_node("Transpose", ["h"], ["t"], perm=[0, 2, 1, 3], name="transpose"),
         oh.make_node("MaxPool", ["t"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
         oh.make_node("Reshape", ["p", "shape"], ["r"], name="reshape"),
         oh.make_node("MatMul", ["r", "w2"], ["y"], name="fc")],
        [("x", ["N", 3, 8, 8])], [("y", ["N", 2])],
        {"w": (8, 3, 1, 1), "shape": np.array([-1, 128], np.int64), "w2": (128, 2)},
    )


def refuse_transposed_channels_pooled() -> onnx.ModelProto:
    """Channels moved to a spatial axis by Transpose, then mixed by MaxPool: the pruned
    model's output shape differs and verification refuses it (should be frozen)."""
    return _model(
        [oh.make_node("Conv", ["x", "w"], ["h"], name="conv"),
         oh.make_node("Transpose", ["h"], ["t"], perm=[0, 2, 1, 3], name="transpose"),
         oh.make_node("MaxPool", ["t"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
         oh.make_node("Conv", ["p", "w2"], ["y"], name="conv2")],
        [("x", [1, 3, 8, 8])], [("y", [1, 2, 4, 4])], {"w": (8, 3, 1, 1), "w2": (2, 8, 1, 1)},
    )


def refuse_transposed_channels_conv() -> onnx.ModelProto:
    """Channels moved to a spatial axis by Transpose, then convolved over by a 3x3 Conv."""
    return _model(
        [oh.make_node("Conv", ["x", "w"], ["h"], name="conv"),
         oh.make_node("Transpose", ["h"], ["t"], perm=[0, 2, 1, 3], name="transpose"),
         oh.make_node("Conv", ["t", "w2"], ["y"], name="conv2")],
        [("x", [1, 3, 8, 8])], [("y", [1, 2, 6, 6])], {"w": (8, 3, 1, 1), "w2": (2, 8, 3, 3)},
    )


CASE_TABLE = {
    "concat-input-output": (concat_input_output, ["--ratio", "0.5"],
                            "[outputs-changed] exit 0, output y shrinks (taken for a KV cache)"),
    "concat-input-shrinks-input": (concat_input_shrinks_input, ["--ratio", "0.5"],
                                   "[inputs-changed] exit 0, graph input x shrinks (taken for a KV cache)"),
    "ort-log-on-stderr": (ort_log_on_stderr, ["--ratio", "0.5"],
                          "[stderr-lines] exit 1 with ONNX Runtime's own error log before the one line"),
    "refuse-transposed-channels-pooled": (refuse_transposed_channels_pooled, ["--ratio", "0.5"],
                                          "refusal: verification fails (output shape), exit 1 one line"),
    "refuse-transposed-channels-conv": (refuse_transposed_channels_conv, ["--ratio", "0.5"],
                                        "refusal: verification fails (output shape), exit 1 one line"),
}


def conv_relu_conv() -> onnx.ModelProto:
    """A valid model (as tests/conftest.py) for the command-line cases."""
    from test_bad_inputs import conv_relu_conv as crc

    return crc()


def truncated_before_opset() -> bytes:
    """conv_relu_conv's bytes cut where opset_import (field 8, written last) starts: a
    protobuf that parses, with a graph and no opset_import."""
    m = conv_relu_conv()
    del m.opset_import[:]
    return m.SerializeToString()


def duplicate_initializer() -> onnx.ModelProto:
    from test_bad_inputs import _duplicate_initializer_model

    return _duplicate_initializer_model()


# Bad-input cases: checked by test_bad_inputs.py (named in "check"), kept here as files.
BAD_INPUTS = {
    "truncated-before-opset": ("truncated-before-opset.onnx", [],
                               ("prune and inspect: exit 1 'onnxprune: internal error: InferenceError ... "
                                "No opset import for domain'"), "test_truncated_protobuf[before-opset_import-*]"),
    "duplicate-initializer": ("duplicate-initializer.onnx", [],
                              "prune and inspect: exit 0 (prune writes a model) for an invalid model",
                              "test_broken_graph[duplicate-initializer-*]"),
    "save-plan-dir": ("conv-relu-conv.onnx", ["--save-plan", "DIR"],
                      "exit 1 'internal error: IsADirectoryError', out.onnx left (an existing one replaced)",
                      "test_save_plan_is_a_directory, test_bad_options_do_not_touch_existing_output"),
    "report-dir": ("conv-relu-conv.onnx", ["--report", "DIR"],
                   "exit 1 'internal error: IsADirectoryError', out.onnx left", "test_report_is_a_directory"),
    "ratio-out-of-range": ("conv-relu-conv.onnx", ["--ratio", "1.5 | -0.1 | nan", "--round-to", "0"],
                           "exit 1 'onnxprune: error: --ratio must be in [0, 1)' (want 2)",
                           "test_out_of_range_option[*]"),
    "target-flops-out-of-range": ("conv-relu-conv.onnx",
                                  ["--method", "layers", "--calib", "calib.npz", "--target-flops", "0 | 1"],
                                  "exit 1 'onnxprune: error: --target-flops is the fraction to remove' (want 2)",
                                  "test_out_of_range_target_flops[*]"),
}
PLAN_CASES = ["json-list", "entry-without-tensor", "channels-abc", "channels-null", "removed-string",
              "removed-float", "removed-missing", "removed-abc"]


def _plans(model_path: Path) -> dict[str, str]:
    """The malformed plans of test_bad_inputs, made from the plan onnxprune writes today."""
    import contextlib
    import io
    import tempfile

    from test_bad_inputs import _bad_plans

    from onnxprune.cli import main as cli

    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli(["prune", str(model_path), "-o", f"{tmp}/o.onnx", "--save-plan", f"{tmp}/p.json"]) == 0
        good = json.loads(Path(f"{tmp}/p.json").read_text())
    return _bad_plans(good)


def main() -> None:
    import sys

    sys.path.insert(0, str(HERE))
    CASES.mkdir(exist_ok=True)
    table = {}
    for name, (build, args, what) in CASE_TABLE.items():
        onnx.save(build(), CASES / f"{name}.onnx")
        table[name] = {"model": f"{name}.onnx", "args": args, "expect": what, "check": "oracle"}
    onnx.save(conv_relu_conv(), CASES / "conv-relu-conv.onnx")
    (CASES / "truncated-before-opset.onnx").write_bytes(truncated_before_opset())
    onnx.save(duplicate_initializer(), CASES / "duplicate-initializer.onnx")
    for name, (model, args, what, check) in BAD_INPUTS.items():
        table[name] = {"model": model, "args": args, "expect": what, "check": f"test_bad_inputs.py::{check}"}
    plans = _plans(CASES / "conv-relu-conv.onnx")
    for case in PLAN_CASES:
        (CASES / f"plan-{case}.json").write_text(plans[case])
        table[f"plan-{case}"] = {
            "model": "conv-relu-conv.onnx", "args": ["--plan", f"plan-{case}.json"],
            "expect": "exit 1 'onnxprune: internal error: ...' (want 'onnxprune: error: ...plan...')",
            "check": f"test_bad_inputs.py::test_malformed_plan[{case}]",
        }
    (CASES / "cases.json").write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
