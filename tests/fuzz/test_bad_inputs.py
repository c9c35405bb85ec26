"""A corpus of bad inputs and bad command lines for `onnxprune prune` and `inspect`.

The contract (README "Exit codes"): 0 done; 1 failed: exactly one line on stderr
starting with "onnxprune: error:", no traceback, no output file (and no temporary file
or folder left behind); 2 bad usage (argparse: usage text plus one
"onnxprune <cmd>: error: ..." line). Out-of-range numeric option values are bad usage
(exit 2), the intended contract for this corpus.

Every case runs `onnxprune.cli.main` in-process with the working directory set to a
fresh tmp_path, and checks that nothing new appears anywhere under tmp_path.
"""
from __future__ import annotations

import json
import os
import shutil
import stat

import numpy as np
import onnx
import onnx.numpy_helper as onh
import onnx.parser
import pytest
from oracle import run_cli
from support import conv_relu_conv

# --------------------------------------------------------------------------- helpers


def tree(root) -> set[str]:
    """Every file and folder under root, relative."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


call = run_cli


def expect_failure(argv: list[str], root, capfd, *words: str) -> str:
    """Exit 1, exactly one stderr line "onnxprune: error: ..." (not an internal error),
    no traceback, nothing new under `root`. Every broken rule is listed in one assertion
    message. Returns the stderr line."""
    before = tree(root)
    code, out, err = call(argv, capfd)
    lines = err.splitlines()
    line = lines[0] if lines else ""
    problems = []
    if "Traceback" in out + err:
        problems.append("traceback")
    if code != 1:
        problems.append(f"exit {code!r} (want 1)")
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines (want 1)")
    if line.startswith("onnxprune: internal error:"):
        problems.append("internal error")
    elif code == 1 and not line.startswith("onnxprune: error: "):
        problems.append("stderr line does not start with 'onnxprune: error: '")
    missing = [w for w in words if w.lower() not in line.lower()]
    if code == 1 and missing:
        problems.append(f"stderr line does not name {missing}")
    left = tree(root) - before
    if left:
        problems.append(f"left on disk: {sorted(left)}")
    assert not problems, f"{'; '.join(problems)}. stderr: {err.strip()[:600]!r}"
    return line


def expect_usage_error(argv: list[str], root, capfd, *words: str) -> str:
    """Exit 2 (argparse): no traceback, one "error:" line naming the problem, nothing new
    under `root`. Returns the error line."""
    before = tree(root)
    code, out, err = call(argv, capfd)
    assert "Traceback" not in out + err, err
    assert code == 2, f"exit {code!r} (want 2, bad usage); stderr: {err.strip()[:600]!r}"
    errors = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(errors) == 1, f"want one error line, stderr: {err!r}"
    for w in words:
        assert w.lower() in errors[0].lower(), (w, errors[0])
    left = tree(root) - before
    assert not left, f"left on disk: {sorted(left)}"
    return errors[0]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ONNXPRUNE_DEBUG", raising=False)


@pytest.fixture
def model_path(tmp_path) -> str:
    path = tmp_path / "model.onnx"
    onnx.save(conv_relu_conv(), path)
    return str(path)


@pytest.fixture
def calib_path(tmp_path) -> str:
    path = tmp_path / "calib.npz"
    np.savez(path, x=np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32))
    return str(path)


def both_commands(model: str, out: str) -> list[list[str]]:
    return [["prune", model, "-o", out], ["inspect", model]]


# --------------------------------------------------------------------------- bad model files


def _write(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("command", ["prune", "inspect"])
def test_text_file_named_onnx(command, tmp_path, capfd):
    path = _write(tmp_path, "notes.onnx", b"these are my notes, not a model\n" * 10)
    argv = both_commands(path, str(tmp_path / "out.onnx"))[0 if command == "prune" else 1]
    expect_failure(argv, tmp_path, capfd, "notes.onnx")


@pytest.mark.parametrize("command", ["prune", "inspect"])
def test_empty_file(command, tmp_path, capfd):
    path = _write(tmp_path, "empty.onnx", b"")
    argv = both_commands(path, str(tmp_path / "out.onnx"))[0 if command == "prune" else 1]
    expect_failure(argv, tmp_path, capfd, "empty.onnx")


def _truncation_offsets() -> dict[str, int]:
    model = conv_relu_conv()
    data = model.SerializeToString()
    without_opset = onnx.ModelProto()
    without_opset.CopyFrom(model)
    del without_opset.opset_import[:]
    before_opset = len(without_opset.SerializeToString())  # opset_import (field 8) is written last
    assert data[:before_opset] == without_opset.SerializeToString()
    return {
        "1-byte": 1,
        "2-bytes": 2,
        "10-bytes": 10,
        "third": len(data) // 3,
        "half": len(data) // 2,
        "before-opset_import": before_opset,
        "inside-opset_import": before_opset + 3,
        "last-byte-missing": len(data) - 1,
    }


@pytest.mark.parametrize("command", ["prune", "inspect"])
@pytest.mark.parametrize("cut", list(_truncation_offsets()))
def test_truncated_protobuf(cut, command, tmp_path, capfd):
    data = conv_relu_conv().SerializeToString()
    path = _write(tmp_path, f"cut-{cut}.onnx", data[: _truncation_offsets()[cut]])
    argv = both_commands(path, str(tmp_path / "out.onnx"))[0 if command == "prune" else 1]
    expect_failure(argv, tmp_path, capfd)


@pytest.mark.parametrize("command", ["prune", "inspect"])
def test_directory_as_model(command, tmp_path, capfd):
    d = tmp_path / "model_dir.onnx"
    d.mkdir()
    argv = both_commands(str(d), str(tmp_path / "out.onnx"))[0 if command == "prune" else 1]
    expect_failure(argv, tmp_path, capfd, "directory")


@pytest.mark.parametrize("command", ["prune", "inspect"])
def test_missing_file(command, tmp_path, capfd):
    argv = both_commands(str(tmp_path / "nope.onnx"), str(tmp_path / "out.onnx"))[0 if command == "prune" else 1]
    expect_failure(argv, tmp_path, capfd, "nope.onnx")


def _missing_initializer_model() -> onnx.ModelProto:
    """The second Conv reads 'w2_missing', which no initializer, input or node provides."""
    m = conv_relu_conv()
    for node in m.graph.node:
        if node.input[1:2] == ["w2"]:
            node.input[1] = "w2_missing"
    return m


def _duplicate_initializer_model() -> onnx.ModelProto:
    """Two initializers named 'w1' (different values, same shape)."""
    m = conv_relu_conv()
    w1 = next(i for i in m.graph.initializer if i.name == "w1")
    dup = onh.from_array(-onh.to_array(w1), "w1")
    m.graph.initializer.append(dup)
    return m


@pytest.mark.parametrize("command", ["prune", "inspect"])
@pytest.mark.parametrize("kind", ["missing-initializer", "duplicate-initializer"])
def test_broken_graph(kind, command, tmp_path, capfd):
    proto = _missing_initializer_model() if kind == "missing-initializer" else _duplicate_initializer_model()
    with pytest.raises(onnx.checker.ValidationError):  # the corpus entry really is invalid
        onnx.checker.check_model(proto, full_check=True)
    path = tmp_path / f"{kind}.onnx"
    onnx.save(proto, path)
    argv = both_commands(str(path), str(tmp_path / "out.onnx"))[0 if command == "prune" else 1]
    expect_failure(argv, tmp_path, capfd)


# --------------------------------------------------------------------------- bad output paths


def test_output_in_missing_directory(model_path, tmp_path, capfd):
    out = tmp_path / "no" / "such" / "dir" / "out.onnx"
    expect_failure(["prune", model_path, "-o", str(out)], tmp_path, capfd, "does not exist")


def test_output_is_a_directory(model_path, tmp_path, capfd):
    d = tmp_path / "outdir"
    d.mkdir()
    expect_failure(["prune", model_path, "-o", str(d)], tmp_path, capfd, "directory")


def test_save_plan_is_a_directory(model_path, tmp_path, capfd):
    d = tmp_path / "plandir"
    d.mkdir()
    expect_failure(["prune", model_path, "-o", str(tmp_path / "out.onnx"), "--save-plan", str(d)],
                   tmp_path, capfd, "plandir")


def test_report_is_a_directory(model_path, tmp_path, capfd):
    d = tmp_path / "reportdir"
    d.mkdir()
    expect_failure(["prune", model_path, "-o", str(tmp_path / "out.onnx"), "--report", str(d)],
                   tmp_path, capfd, "reportdir")


def test_plan_file_missing(model_path, tmp_path, capfd):
    expect_failure(["prune", model_path, "-o", str(tmp_path / "out.onnx"), "--plan", str(tmp_path / "nope.json")],
                   tmp_path, capfd, "nope.json")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores chmod 0o500")
def test_report_in_read_only_directory(model_path, tmp_path, capfd):
    ro = tmp_path / "ro"
    ro.mkdir()
    out = tmp_path / "out.onnx"
    ro.chmod(0o500)
    try:
        expect_failure(["prune", model_path, "-o", str(out), "--report", str(ro / "report.json")],
                       tmp_path, capfd, "report.json")
    finally:
        ro.chmod(stat.S_IRWXU)


# --------------------------------------------------------------------------- malformed plans


@pytest.fixture
def good_plan(model_path, tmp_path, capfd) -> dict:
    """A plan onnxprune itself wrote for the model (made outside tmp_path's root files)."""
    work = tmp_path / "_plan_src"
    work.mkdir()
    plan = work / "plan.json"
    code, _, err = call(["prune", model_path, "-o", str(work / "o.onnx"), "--save-plan", str(plan)], capfd)
    assert code == 0, err
    data = json.loads(plan.read_text())
    shutil.rmtree(work)
    assert data["channels"] and "tensor" in data["channels"][0], data
    return data


def _bad_plans(good: dict) -> dict[str, str]:
    entry = good["channels"][0]

    def with_entry(**changes) -> str:
        e = {k: v for k, v in entry.items() if k not in changes or changes[k] is not _DROP}
        e.update({k: v for k, v in changes.items() if v is not _DROP})
        return json.dumps({**good, "channels": [e]})

    return {
        "not-json": "{this is not json",
        "json-list": json.dumps([good]),
        "entry-without-tensor": with_entry(tensor=_DROP),
        "channels-abc": json.dumps({**good, "channels": "abc"}),
        "channels-null": json.dumps({**good, "channels": None}),
        "removed-string": with_entry(removed=["a"]),
        "removed-float": with_entry(removed=[1.5]),
        # beyond the brief's list
        "removed-missing": with_entry(removed=_DROP),
        "removed-abc": with_entry(removed="abc"),
        "removed-negative": with_entry(removed=[-1]),
        "removed-out-of-range": with_entry(removed=[entry["size"]]),
        "removed-all": with_entry(removed=list(range(entry["size"]))),
        "no-format": json.dumps({k: v for k, v in good.items() if k != "format"}),
        "empty-file": "",
    }


_DROP = object()
_PLAN_CASES = ["not-json", "json-list", "entry-without-tensor", "channels-abc", "channels-null",
               "removed-string", "removed-float",
               "removed-missing", "removed-abc", "removed-negative", "removed-out-of-range", "removed-all",
               "no-format", "empty-file"]


@pytest.mark.parametrize("case", _PLAN_CASES)
def test_malformed_plan(case, good_plan, model_path, tmp_path, capfd):
    plan = tmp_path / f"{case}.json"
    plan.write_text(_bad_plans(good_plan)[case])
    expect_failure(["prune", model_path, "-o", str(tmp_path / "out.onnx"), "--plan", str(plan)],
                   tmp_path, capfd, "plan")


# --------------------------------------------------------------------------- out-of-range options: exit 2


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--ratio", "1.5"], ["--ratio"]),
        (["--ratio", "-0.1"], ["--ratio"]),
        (["--ratio", "nan"], ["--ratio"]),
        (["--round-to", "0"], ["--round-to"]),
    ],
    ids=["ratio-1.5", "ratio--0.1", "ratio-nan", "round-to-0"],
)
def test_out_of_range_option(extra, words, model_path, tmp_path, capfd):
    argv = ["prune", model_path, "-o", str(tmp_path / "out.onnx"), *extra]
    expect_usage_error(argv, tmp_path, capfd, *words)


@pytest.mark.parametrize("value", ["0", "1"])
def test_out_of_range_target_flops(value, model_path, calib_path, tmp_path, capfd):
    argv = ["prune", model_path, "-o", str(tmp_path / "out.onnx"), "--method", "layers",
            "--calib", calib_path, "--target-flops", value]
    expect_usage_error(argv, tmp_path, capfd, "--target-flops")


def test_tensor_bytes_named_onnx(tmp_path, capfd):
    """A protobuf that parses (a TensorProto's bytes) but is no model."""
    path = _write(tmp_path, "tensor.onnx", onh.from_array(np.ones((4, 4), np.float32), "t").SerializeToString())
    expect_failure(["prune", path, "-o", str(tmp_path / "out.onnx")], tmp_path, capfd)
    expect_failure(["inspect", path], tmp_path, capfd)


def test_unknown_default_opset_version(tmp_path, capfd):
    """A model importing the default domain at an opset ONNX does not have yet."""
    m = conv_relu_conv()
    m.opset_import[0].version = 999
    path = tmp_path / "future.onnx"
    onnx.save(m, path)
    expect_failure(["prune", str(path), "-o", str(tmp_path / "out.onnx")], tmp_path, capfd)


def test_valid_model_control(model_path, tmp_path, capfd):
    """Control: the model the corpus is built from prunes (so failures above are about the
    bad input, not the model)."""
    code, _, err = call(["prune", model_path, "-o", str(tmp_path / "out.onnx")], capfd)
    assert code == 0, err
    assert (tmp_path / "out.onnx").is_file()


def test_missing_initializer_read_by_first_node(tmp_path, capfd):
    """The first Conv's weight is missing (nothing produces 'w1_missing')."""
    m = conv_relu_conv()
    m.graph.node[0].input[1] = "w1_missing"
    path = tmp_path / "missing-first.onnx"
    onnx.save(m, path)
    expect_failure(["prune", str(path), "-o", str(tmp_path / "out.onnx")], tmp_path, capfd)


def test_bad_options_do_not_touch_existing_output(model_path, tmp_path, capfd):
    """An existing file at -o survives a failed run unchanged."""
    out = tmp_path / "out.onnx"
    out.write_bytes(b"keep me")
    d = tmp_path / "plandir"
    d.mkdir()
    code, _, err = call(["prune", model_path, "-o", str(out), "--save-plan", str(d)], capfd)
    assert code == 1, err
    assert out.read_bytes() == b"keep me", "a failed run replaced the existing output file"

