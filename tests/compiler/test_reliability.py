"""The reliability contract: exit 0 means a drop-in model (same interface, and the same
numbers where the removal was provably exact), and every failure is one clean line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import onnx.parser
import onnx_ir as ir
import pytest
from support import conv_relu_conv, run

from onnxprune.cli import main
from onnxprune.compiler.pipeline import prune
from onnxprune.compiler.workspace import Workspace
from onnxprune.errors import OnnxPruneError


def _model(text: str, weights: dict) -> onnx.ModelProto:
    proto = onnx.parser.parse_model(text)
    rng = np.random.default_rng(0)
    for name, shape in weights.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name))
    return proto


def test_a_concat_of_the_input_is_no_kv_cache():
    """A CNN's skip concatenation exposed as an output keeps its shape, and so does the
    image input: only a concatenation that feeds attention is a cache."""
    proto = _model(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,8,16,16] x) => (float[1,18,16,16] cat, float[1,4,16,16] y) {
          t = Conv<pads = [1, 1, 1, 1]>(x, w1)
          cat = Concat<axis = 1>(t, x)
          y = Conv(t, w2)
        }
        """,
        {"w1": (10, 8, 3, 3), "w2": (4, 10, 1, 1)},
    )
    result = prune(proto, ratio=0.5)
    assert result.report["interface"] == []
    assert result.report["verification"]["ok"]
    x = np.random.default_rng(1).standard_normal((1, 8, 16, 16)).astype(np.float32)
    assert run(result.model, {"x": x})["cat"].shape == (1, 18, 16, 16)


# --------------------------------------------------------------------------- through the CLI

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "models")
DIGITS = os.path.join(ROOT, "digits", "digits_resnet.onnx")
CALIB = os.path.join(ROOT, "digits", "digits_calib.npz")


def _cli(capfd, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return code, out, err


def _one_line_failure(capfd, tmp_path, *argv, code=1, words=()) -> str:
    before = set(os.listdir(tmp_path))
    got, out, err = _cli(capfd, *argv)
    assert got == code, (got, out, err)
    assert len(err.splitlines()) == 1 and err.startswith("onnxprune: error: "), err
    assert "internal error" not in err and "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    assert set(os.listdir(tmp_path)) == before, set(os.listdir(tmp_path)) - before
    return err


@pytest.fixture
def crc(tmp_path) -> str:
    path = tmp_path / "crc.onnx"
    onnx.save(conv_relu_conv(), path)
    return str(path)


def test_duplicate_initializer_names_are_refused(tmp_path, capfd):
    proto = conv_relu_conv()
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros(8, np.float32), "b1"))
    path = tmp_path / "dup.onnx"
    onnx.save(proto, path)
    _one_line_failure(capfd, tmp_path, "prune", path, "-o", tmp_path / "o.onnx", words=("two initializers named 'b1'",))


def test_missing_initializer_is_one_line(tmp_path, capfd):
    proto = conv_relu_conv()
    del proto.graph.initializer[1]  # b1: read by the first Conv, defined nowhere now
    path = tmp_path / "missing.onnx"
    onnx.save(proto, path)
    _one_line_failure(capfd, tmp_path, "prune", path, "-o", tmp_path / "o.onnx", words=("'b1'", "incomplete"))


def test_truncated_before_opset_import(tmp_path, capfd):
    proto = conv_relu_conv()
    del proto.opset_import[:]
    path = tmp_path / "noopset.onnx"
    onnx.save(proto, path)
    for command in (["prune", path, "-o", tmp_path / "o.onnx"], ["inspect", path]):
        _one_line_failure(capfd, tmp_path, *command, words=("no opset version",))


def test_save_plan_on_a_directory_writes_nothing(tmp_path, capfd, crc):
    (tmp_path / "plans").mkdir()
    _one_line_failure(capfd, tmp_path, "prune", crc, "-o", tmp_path / "o.onnx", "--save-plan", tmp_path / "plans",
                      words=("is a directory",))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores folder permissions")
def test_output_in_a_read_only_folder(tmp_path, capfd, crc):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        _one_line_failure(capfd, tmp_path, "prune", crc, "-o", locked / "o.onnx", words=("cannot write",))
        assert os.listdir(locked) == []
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("plan, words", [
    ([], "not an onnxprune plan"),
    ({"format": "onnxprune.plan/1", "channels": "abc"}, '"channels" must be a list'),
    ({"format": "onnxprune.plan/1", "channels": None}, '"channels" must be a list'),
    ({"format": "onnxprune.plan/1", "channels": [{"axis": 0, "node": "n", "removed": [1]}]}, 'no "tensor"'),
    ({"format": "onnxprune.plan/1", "channels": [{"tensor": "w1", "axis": 0, "node": "n", "removed": ["a"]}]},
     "integer indices"),
    ({"format": "onnxprune.plan/1", "channels": [{"tensor": "w1", "axis": 0, "node": "n", "removed": [1.5]}]},
     "integer indices"),
])
def test_malformed_plans_are_one_line(tmp_path, capfd, crc, plan, words):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    _one_line_failure(capfd, tmp_path, "prune", crc, "-o", tmp_path / "o.onnx", "--plan", path, words=(words,))


@pytest.mark.parametrize("flags", [["--ratio", "1.5"], ["--ratio", "-0.1"], ["--ratio", "nan"], ["--round-to", "0"],
                                   ["--method", "layers", "--calib", CALIB, "--target-flops", "0"],
                                   ["--method", "layers", "--calib", CALIB, "--target-flops", "1"]])
def test_out_of_range_values_are_bad_usage(tmp_path, capfd, crc, flags):
    _one_line_failure(capfd, tmp_path, "prune", crc, "-o", tmp_path / "o.onnx", *flags, code=2)


def test_initializers_listed_as_inputs_are_pruned(tmp_path, capfd):
    proto = conv_relu_conv()
    for init in proto.graph.initializer:  # an older exporter's habit
        proto.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    path = tmp_path / "old.onnx"
    onnx.save(proto, path)
    report = tmp_path / "r.json"
    code, _, err = _cli(capfd, "prune", path, "-o", tmp_path / "o.onnx", "--report", report)
    assert code == 0, err
    assert json.loads(report.read_text())["groups"]["channels_removed"] > 0


def test_target_not_reached_says_why_and_exits_3(tmp_path, capfd):
    """Two blocks per stage: with the default --min-blocks-per-stage 2 none is eligible."""
    report = tmp_path / "r.json"
    code, _, err = _cli(capfd, "prune", DIGITS, "-o", tmp_path / "o.onnx", "--method", "layers", "--calib", CALIB,
                        "--samples", 32, "--target-blocks", 7, "--report", report)
    assert code == 3, err
    assert err.count("\n") == 1 and "target not reached" in err and "--min-blocks-per-stage" in err
    data = json.loads(report.read_text())
    assert data["target_reached"] is False and data["stopped_because"]
    assert (tmp_path / "o.onnx").exists() and data["verification"]["ok"]


def test_wrong_values_fail_verification(monkeypatch):
    """A removal claimed exact whose numbers differ is caught: break the rewrite on
    purpose (a consumer weight scaled afterwards) and verification must refuse the model."""
    real = Workspace.rewrite

    def broken(self, removed, dropped, *, slice_channels):
        real(self, removed, dropped, slice_channels=slice_channels)
        for value in self.model.graph.initializers.values():
            if value.name.startswith("w2"):
                value.const_value = ir.tensor(value.const_value.numpy() * 1.5)

    monkeypatch.setattr(Workspace, "rewrite", broken)
    with pytest.raises(OnnxPruneError, match="differs from the original with the removed channels"):
        prune(conv_relu_conv(), ratio=0.5)


def _start(tmp_path, *argv) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "onnxprune.cli", *map(str, argv)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_mid_run_leaves_nothing(tmp_path, sig):
    """The signal arrives inside a run (a fine-tuning hook that says when it started and
    then waits), so the test does not depend on how fast the machine is."""
    out, started = tmp_path / "out", tmp_path / "started"
    out.mkdir()
    hook = tmp_path / "hook.py"
    hook.write_text(f"import time\ndef slow(model):\n    open({str(started)!r}, 'w').close()\n    time.sleep(120)\n"
                    "    return model\n")
    proc = _start(tmp_path, "prune", DIGITS, "-o", out / "o.onnx", "--method", "everything", "--calib", CALIB,
                  "--samples", 32, "--target-flops", "0.3", "--report", out / "r.json", "--fine-tune", f"{hook}:slow")
    deadline = time.monotonic() + 120
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert started.exists(), proc.communicate()[1]
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert err.strip().splitlines() == ["onnxprune: interrupted: nothing was written"], err
    assert os.listdir(out) == []


def test_an_interrupt_while_staging_the_outputs_leaves_nothing(tmp_path, capfd, monkeypatch, crc):
    """Interrupted after the model was staged, before anything was renamed into place."""
    from onnxprune import model_io

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_io.StagedOutputs, "json", interrupted)
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = _cli(capfd, "prune", crc, "-o", out / "o.onnx", "--report", out / "r.json")
    assert code == 1 and err.strip() == "onnxprune: interrupted: nothing was written"
    assert os.listdir(out) == []


def test_a_signal_during_the_final_renames_is_ignored(tmp_path, capfd, monkeypatch, crc):
    """SIGTERM while the outputs are renamed into place: the run completes, exit 0."""
    from onnxprune import model_io

    real_replace, sent = os.replace, []

    def replace(src, dst):
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        real_replace(src, dst)

    monkeypatch.setattr(model_io.os, "replace", replace)
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = _cli(capfd, "prune", crc, "-o", out / "o.onnx", "--report", out / "r.json", "--save-plan",
                        out / "p.json")
    assert sent and code == 0, err
    assert sorted(os.listdir(out)) == ["o.onnx", "p.json", "r.json"]


def test_eval_on_a_fixed_batch_and_on_data_that_does_not_fit(tmp_path, capfd):
    proto = onnx.load(DIGITS)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # exported with batch 1
    for out in proto.graph.output:
        out.type.tensor_type.shape.dim[0].dim_value = 1
    fixed = tmp_path / "b1.onnx"
    onnx.save(proto, fixed)
    test = os.path.join(ROOT, "digits", "digits_test.npz")
    code, out, err = _cli(capfd, "prune", fixed, "-o", tmp_path / "o.onnx", "--ratio", "0", "--eval", test)
    assert code == 0, err
    assert "98.89 % -> 98.89 %" in out  # every sample evaluated, one at a time
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((4, 3, 32, 32), np.float32), y=np.zeros(4, np.int64))
    _one_line_failure(capfd, tmp_path, "prune", DIGITS, "-o", tmp_path / "o2.onnx", "--eval", wrong,
                      words=("--eval data",))
