"""The command line: `onnxprune prune` and `onnxprune inspect`.

Contract: exit 0 done; 1 failed, with exactly one line on stderr, no traceback, and no
output file; 2 bad usage (argparse). Most cases go through `main([...])` in-process;
one of each kind also through the installed `onnxprune` console script.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper
import onnx.parser
import pytest
from support import feeds_for, input_signature, run, zoo

from onnxprune.cli import main

RESNET20 = zoo("resnet20.onnx")


@pytest.fixture
def resnet20(tmp_path) -> str:
    """A private copy, so nothing a test does can touch models/."""
    path = tmp_path / "resnet20.onnx"
    shutil.copy(RESNET20, path)
    return str(path)


def _files(directory) -> set[str]:
    return {p for p in os.listdir(directory)}


def _fail(capfd, tmp_path, argv: list[str], *words: str, code: int = 1) -> str:
    """Run `main(argv)`, expect exit `code` (1: failed, 2: bad usage) with one stderr
    line naming `words`; return it. Nothing new may appear in tmp_path (no output, no
    temp file left behind)."""
    before = _files(tmp_path)
    got = main(argv)
    out, err = capfd.readouterr()
    assert got == code, (got, out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("onnxprune: error: "), line
    assert "Traceback" not in err
    for w in words:
        assert w.lower() in line.lower(), (w, line)
    assert _files(tmp_path) == before, _files(tmp_path) - before
    return line


# --------------------------------------------------------------------------- prune


def test_prune_writes_model_and_report(tmp_path, capfd, resnet20):
    out, report = tmp_path / "out.onnx", tmp_path / "report.json"
    code = main(["prune", resnet20, "-o", str(out), "--report", str(report)])
    stdout, err = capfd.readouterr()
    assert code == 0, err
    assert "Traceback" not in err
    assert out.exists() and report.exists()
    assert "MACs" in stdout and "verified" in stdout
    pruned = onnx.load(str(out))
    onnx.checker.check_model(pruned, full_check=True)
    original = onnx.load(resnet20)
    assert input_signature(pruned) == input_signature(original)
    assert run(str(out), feeds_for(original, batch=3))["logits"].shape == (3, 10)

    data = json.loads(report.read_text())
    assert {"cost", "groups", "verification", "plan"} <= set(data)
    assert data["verification"]["ok"] is True
    assert data["cost"]["after"] == data["cost"]["predicted"]
    assert data["cost"]["after"]["macs"] < data["cost"]["before"]["macs"]
    assert data["groups"]["channels_removed"] > 0 and data["groups"]["detail"]
    assert data["plan"]["format"] == "onnxprune.plan/1" and data["plan"]["channels"]
    # nothing else was written next to the output
    assert _files(tmp_path) == {"resnet20.onnx", "out.onnx", "report.json"}


def test_save_plan_then_apply_plan(tmp_path, capfd, resnet20):
    a, b, plan = tmp_path / "a.onnx", tmp_path / "b.onnx", tmp_path / "plan.json"
    assert main(["prune", resnet20, "-o", str(a), "--ratio", "0.3", "--save-plan", str(plan)]) == 0
    assert main(["prune", resnet20, "-o", str(b), "--plan", str(plan)]) == 0
    capfd.readouterr()
    assert a.read_bytes() == b.read_bytes()


def test_prune_options(tmp_path, capfd, resnet20):
    out, report = tmp_path / "out.onnx", tmp_path / "r.json"
    argv = ["prune", resnet20, "-o", str(out), "--report", str(report), "--ratio", "0.25",
            "--criterion", "l2", "--global", "--round-to", "4"]
    assert main(argv) == 0, capfd.readouterr().err
    settings = json.loads(report.read_text())["settings"]
    assert settings == {"ratio": 0.25, "criterion": "l2", "global": True, "round_to": 4, "ignore": [], "kind_ratios": {},
        "resize_io": [], "resize_cache": True,
    }


def test_ignore_keeps_conv_weight(tmp_path, capfd, resnet20):
    original = onnx.load(resnet20)
    convs = [n for n in original.graph.node if n.op_type == "Conv"]
    target = next(n for n in convs if "layer1.0/conv1" in n.name)
    shapes = {i.name: tuple(i.dims) for i in original.graph.initializer}
    out, report = tmp_path / "out.onnx", tmp_path / "r.json"
    assert main(["prune", resnet20, "-o", str(out), "--ignore", target.name, "--report", str(report)]) == 0
    capfd.readouterr()
    pruned = onnx.load(str(out))
    after = {i.name: tuple(i.dims) for i in pruned.graph.initializer}
    (node,) = [n for n in pruned.graph.node if n.name == target.name]
    assert after[node.input[1]] == shapes[target.input[1]]
    assert after[node.input[2]] == shapes[target.input[2]]
    # other convs did shrink, and the report records the request
    assert any(after.get(n.input[1]) != shapes[n.input[1]] for n in convs if n is not target)
    assert json.loads(report.read_text())["settings"]["ignore"] == [target.name]


def test_input_shape_override(tmp_path, capfd):
    path = zoo("mobilenetv2.onnx")
    out, report = tmp_path / "out.onnx", tmp_path / "r.json"
    code = main(["prune", path, "-o", str(out), "--input-shape", "input=2,3,32,32", "--report", str(report)])
    assert code == 0, capfd.readouterr().err
    data = json.loads(report.read_text())
    assert data["input_shapes"] == {"input": [2, 3, 32, 32]}
    assert data["verification"]["ok"]
    before = onnx.load(path)
    assert input_signature(onnx.load(str(out))) == input_signature(before)  # batch stays symbolic
    # MACs scale with the batch that was asked for
    capfd.readouterr()
    assert main(["inspect", path, "--json"]) == 0
    single = json.loads(capfd.readouterr().out)
    assert single["input_shapes"] == {"input": [1, 3, 32, 32]}
    assert data["cost"]["before"]["macs"] == 2 * single["total"]["macs"]
    assert main(["inspect", path, "--json", "--input-shape", "input=4,3,32,32"]) == 0
    assert json.loads(capfd.readouterr().out)["total"]["macs"] == 4 * single["total"]["macs"]


# --------------------------------------------------------------------------- inspect


def test_inspect_text(capfd, resnet20):
    assert main(["inspect", resnet20]) == 0
    out, err = capfd.readouterr()
    assert "channel groups:" in out and "MACs" in out
    assert "frozen: graph output 'logits'" in out
    assert "/conv1/Conv" in out  # the node table
    assert main(["inspect", resnet20, "--no-nodes"]) == 0
    out2, _ = capfd.readouterr()
    assert "/conv1/Conv" not in out2 and "channel groups:" in out2


def test_inspect_json_lists_frozen_reasons(capfd, resnet20):
    assert main(["inspect", resnet20, "--json"]) == 0
    info = json.loads(capfd.readouterr().out)
    assert {"input_shapes", "total", "groups", "nodes"} <= set(info)
    groups = info["groups"]
    assert groups and all({"id", "size", "prunable", "frozen_reasons", "sources", "members"} <= set(g) for g in groups)
    (classifier,) = [g for g in groups if any(s.startswith("fc.weight") for s in g["sources"])]
    assert classifier["prunable"] == 0
    assert any("graph output 'logits'" in r for r in classifier["frozen_reasons"])
    assert sum(1 for g in groups if g["prunable"]) >= 10
    assert all(g["frozen_reasons"] == [] for g in groups if g["prunable"] == g["size"])
    assert info["total"]["macs"] == 40813184  # resnet20 at 1x3x32x32 (cost model oracle)


# --------------------------------------------------------------------------- usage: exit 2


@pytest.mark.parametrize(
    "argv",
    [
        ["prune", RESNET20],  # missing -o
        ["prune", RESNET20, "-o", "x.onnx", "--no-such-flag"],
        ["prune", RESNET20, "-o", "x.onnx", "--criterion", "foo"],
        ["prune", RESNET20, "-o", "x.onnx", "--ratio", "half"],
        ["frobnicate", RESNET20],
        [],
    ],
    ids=["missing-o", "unknown-flag", "bad-criterion", "ratio-not-a-number", "unknown-command", "nothing"],
)
def test_bad_usage_exits_2(argv, tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2  # main returns the exit code; bad usage is one line too
    _, err = capfd.readouterr()
    assert "usage:" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert _files(tmp_path) == set()


# --------------------------------------------------------------------------- bad input: exit 1


def _conv_model(nodes_text: str, opsets: str = '"" : 17') -> onnx.ModelProto:
    text = f"""
    <ir_version: 8, opset_import: [{opsets}]>
    g (float[N,3,8,8] x) => (float[N,4,8,8] y) {{
      {nodes_text}
    }}
    """
    proto = onnx.parser.parse_model(text)
    rng = np.random.default_rng(0)
    for name, shape in (("w", (4, 3, 3, 3)), ("b", (4,))):
        array = rng.standard_normal(shape).astype(np.float32)
        proto.graph.initializer.append(onnx.numpy_helper.from_array(array, name))
    return proto


def _qdq_model() -> onnx.ModelProto:
    """x -> QuantizeLinear -> DequantizeLinear -> Conv(w dequantized) -> y."""
    rng = np.random.default_rng(0)
    inits = [
        onnx.numpy_helper.from_array(np.array(0.05, np.float32), "s"),
        onnx.numpy_helper.from_array(np.array(0, np.uint8), "zp"),
        onnx.numpy_helper.from_array(rng.integers(0, 255, (4, 3, 3, 3)).astype(np.uint8), "wq"),
        onnx.numpy_helper.from_array(np.array(0.01, np.float32), "ws"),
        onnx.numpy_helper.from_array(np.array(128, np.uint8), "wzp"),
    ]
    nodes = [
        oh.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"]),
        oh.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"]),
        oh.make_node("DequantizeLinear", ["wq", "ws", "wzp"], ["wd"]),
        oh.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1], name="conv"),
    ]
    graph = oh.make_graph(
        nodes, "qdq",
        [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 8, 8])],
        [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4, 8, 8])],
        inits,
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _if_model() -> onnx.ModelProto:
    """Conv, then an If choosing Relu or Sigmoid on a boolean input."""
    then_g = oh.make_graph([oh.make_node("Relu", ["h"], ["t"])], "then", [],
                           [oh.make_tensor_value_info("t", onnx.TensorProto.FLOAT, None)])
    else_g = oh.make_graph([oh.make_node("Sigmoid", ["h"], ["e"])], "else", [],
                           [oh.make_tensor_value_info("e", onnx.TensorProto.FLOAT, None)])
    rng = np.random.default_rng(0)
    graph = oh.make_graph(
        [
            oh.make_node("Conv", ["x", "w", "b"], ["h"], pads=[1, 1, 1, 1], name="conv"),
            oh.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g, name="branch"),
        ],
        "if_model",
        [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 8, 8]),
         oh.make_tensor_value_info("cond", onnx.TensorProto.BOOL, [])],
        [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4, 8, 8])],
        [onnx.numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
         onnx.numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _loop_model() -> onnx.ModelProto:
    """y = x + 1 added 3 times in a Loop after a Conv."""
    body = oh.make_graph(
        [oh.make_node("Identity", ["cond_in"], ["cond_out"]),
         oh.make_node("Add", ["acc_in", "one"], ["acc_out"])],
        "body",
        [oh.make_tensor_value_info("i", onnx.TensorProto.INT64, []),
         oh.make_tensor_value_info("cond_in", onnx.TensorProto.BOOL, []),
         oh.make_tensor_value_info("acc_in", onnx.TensorProto.FLOAT, None)],
        [oh.make_tensor_value_info("cond_out", onnx.TensorProto.BOOL, []),
         oh.make_tensor_value_info("acc_out", onnx.TensorProto.FLOAT, None)],
    )
    rng = np.random.default_rng(0)
    graph = oh.make_graph(
        [
            oh.make_node("Conv", ["x", "w", "b"], ["h"], pads=[1, 1, 1, 1], name="conv"),
            oh.make_node("Loop", ["trips", "", "h"], ["y"], body=body, name="loop"),
        ],
        "loop_model",
        [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 8, 8])],
        [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4, 8, 8])],
        [onnx.numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
         onnx.numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
         onnx.numpy_helper.from_array(np.array(3, np.int64), "trips"),
         onnx.numpy_helper.from_array(np.array(1.0, np.float32), "one")],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _write(tmp_path, name, content) -> str:
    path = tmp_path / name
    if isinstance(content, onnx.ModelProto):
        onnx.save(content, path)
    else:
        path.write_bytes(content)
    return str(path)


def test_not_an_onnx_file(tmp_path, capfd):
    path = _write(tmp_path, "notes.onnx", b"these are my notes, not a model\n" * 10)
    _fail(capfd, tmp_path, ["prune", path, "-o", str(tmp_path / "out.onnx")], "not an ONNX model")
    path = _write(tmp_path, "empty.onnx", b"")
    _fail(capfd, tmp_path, ["prune", path, "-o", str(tmp_path / "out.onnx")], "empty.onnx")


def test_truncated_protobuf(tmp_path, capfd):
    data = open(RESNET20, "rb").read()
    path = _write(tmp_path, "half.onnx", data[: len(data) // 2])
    _fail(capfd, tmp_path, ["prune", path, "-o", str(tmp_path / "out.onnx")], "half.onnx")


def test_missing_external_data(tmp_path, capfd):
    model = onnx.load(RESNET20)
    path = str(tmp_path / "ext.onnx")
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.onnx.data", size_threshold=0)
    os.remove(tmp_path / "ext.onnx.data")
    _fail(capfd, tmp_path, ["prune", path, "-o", str(tmp_path / "out.onnx")], "ext.onnx.data", "missing")


def test_external_data_model_prunes(tmp_path, capfd):
    """The same model with its data file present works (control for the case above)."""
    model = onnx.load(RESNET20)
    path = str(tmp_path / "ext.onnx")
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.onnx.data", size_threshold=0)
    out = tmp_path / "out.onnx"
    assert main(["prune", path, "-o", str(out)]) == 0, capfd.readouterr().err
    assert run(str(out), feeds_for(model))["logits"].shape == (1, 10)


def test_unknown_opset_domain(tmp_path, capfd):
    proto = _conv_model("h = Conv<pads = [1, 1, 1, 1]>(x, w, b)\n y = com.example.Frob(h)",
                        opsets='"" : 17, "com.example" : 1')
    path = _write(tmp_path, "custom.onnx", proto)
    _fail(capfd, tmp_path, ["prune", path, "-o", str(tmp_path / "out.onnx")], "com.example")


def test_quantized_qdq_model_is_pruned(tmp_path, capfd):
    """QDQ models are pruned, not refused (the quantized weight, its scale and zero point
    slice together); here the conv's 4 outputs are the graph output, so nothing goes."""
    path = _write(tmp_path, "qdq.onnx", _qdq_model())
    assert main(["prune", path, "-o", str(tmp_path / "out.onnx")]) == 0
    out = onnx.load(tmp_path / "out.onnx")
    assert {n.op_type for n in out.graph.node} == {"QuantizeLinear", "DequantizeLinear", "Conv"}


@pytest.mark.parametrize("kind", ["If", "Loop"])
def test_control_flow_model(kind, tmp_path, capfd):
    proto = _if_model() if kind == "If" else _loop_model()
    path = _write(tmp_path, f"{kind}.onnx", proto)
    _fail(capfd, tmp_path, ["prune", path, "-o", str(tmp_path / "out.onnx")], kind)
    _fail(capfd, tmp_path, ["inspect", path], kind)


def test_nonexistent_path(tmp_path, capfd):
    missing = str(tmp_path / "nope.onnx")
    _fail(capfd, tmp_path, ["prune", missing, "-o", str(tmp_path / "out.onnx")], "nope.onnx", "does not exist")
    _fail(capfd, tmp_path, ["inspect", missing], "does not exist")


def test_ignore_unknown_node(tmp_path, capfd, resnet20):
    _fail(capfd, tmp_path, ["prune", resnet20, "-o", str(tmp_path / "out.onnx"), "--ignore", "no_such_node"],
          "no_such_node")


@pytest.mark.parametrize("ratio", ["1.5", "1", "-0.1"])
def test_ratio_out_of_range(ratio, tmp_path, capfd, resnet20):
    # Out-of-range values are bad usage (exit 2), as the README says.
    _fail(capfd, tmp_path, ["prune", resnet20, "-o", str(tmp_path / "out.onnx"), "--ratio", ratio], "--ratio", code=2)


def test_round_to_zero(tmp_path, capfd, resnet20):
    _fail(capfd, tmp_path, ["prune", resnet20, "-o", str(tmp_path / "out.onnx"), "--round-to", "0"], "--round-to",
          code=2)


def test_output_directory_missing(tmp_path, capfd, resnet20):
    out = tmp_path / "no" / "such" / "dir" / "out.onnx"
    _fail(capfd, tmp_path, ["prune", resnet20, "-o", str(out)], "does not exist")
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(
    "spec, words",
    [
        ("input=1,x,32,32", ["'x' is not an integer"]),
        ("nonsense", ["expected NAME=D1,D2"]),
        ("input=", ["expected NAME=D1,D2"]),
        ("input=1,3,0,32", ["positive"]),
        ("input=1,3,32", ["rank"]),
        ("input=1,4,32,32", ["axis 1"]),
        ("image=1,3,32,32", ["unknown input", "image"]),
    ],
    ids=["non-int", "no-equals", "no-dims", "zero", "rank", "fixed-dim", "unknown-name"],
)
def test_bad_input_shape(spec, words, tmp_path, capfd, resnet20):
    _fail(capfd, tmp_path, ["prune", resnet20, "-o", str(tmp_path / "out.onnx"), "--input-shape", spec], *words)


def test_bad_plan_file(tmp_path, capfd, resnet20):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format": "onnxprune.plan/1", "channels": [
        {"tensor": "fc.weight", "axis": 0, "node": "/fc/Gemm", "removed": [0]}]}))
    line = _fail(capfd, tmp_path, ["prune", resnet20, "-o", str(tmp_path / "out.onnx"), "--plan", str(plan)],
                 "fc.weight")
    assert "frozen" in line or "no prunable" in line


# --------------------------------------------------------------------------- console script


def _script(*args: str, cwd) -> subprocess.CompletedProcess:
    exe = shutil.which("onnxprune")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "onnxprune.cli", *args]
    env = {k: v for k, v in os.environ.items() if k != "ONNXPRUNE_DEBUG"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def test_console_script(tmp_path):
    assert shutil.which("onnxprune"), "the onnxprune console script is installed (pip install -e .)"
    src = tmp_path / "m.onnx"
    shutil.copy(RESNET20, src)
    ok = _script("prune", "m.onnx", "-o", "small.onnx", "--report", "r.json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "Traceback" not in ok.stderr
    assert (tmp_path / "small.onnx").exists()
    assert json.loads((tmp_path / "r.json").read_text())["verification"]["ok"]

    bad = _script("prune", "missing.onnx", "-o", "never.onnx", cwd=tmp_path)
    assert bad.returncode == 1
    assert len(bad.stderr.splitlines()) == 1 and "Traceback" not in bad.stderr, bad.stderr
    assert not (tmp_path / "never.onnx").exists()

    usage = _script("prune", "m.onnx", cwd=tmp_path)
    assert usage.returncode == 2 and "usage:" in usage.stderr

    info = _script("inspect", "m.onnx", "--json", cwd=tmp_path)
    assert info.returncode == 0 and json.loads(info.stdout)["groups"]


# --------------------------------------------------------------------------- known bugs

SIDE_FILE_BUG = (
    "cli._run_prune saves the model before writing --report/--save-plan; a side file in a "
    "missing directory then fails as 'internal error: FileNotFoundError' after out.onnx exists"
)


@pytest.mark.parametrize("flag", ["--report", "--save-plan"])
def test_side_file_in_missing_directory(flag, tmp_path, capfd, resnet20):
    line = _fail(capfd, tmp_path, ["prune", resnet20, "-o", str(tmp_path / "out.onnx"),
                                   flag, str(tmp_path / "nodir" / "side.json")], "does not exist")
    assert "internal error" not in line


DIR_MESSAGE_BUG = (
    "model_io.save_model: for an output path ending in '/' (no file name) the message says the "
    "(existing) parent directory does not exist"
)


def test_output_path_without_file_name(tmp_path, capfd, resnet20):
    (tmp_path / "d").mkdir()
    line = _fail(capfd, tmp_path, ["prune", resnet20, "-o", str(tmp_path / "d") + os.sep])
    assert "does not exist" not in line, line


def test_output_over_input(tmp_path, capfd, resnet20):
    """-o naming the input file replaces it atomically with the pruned model."""
    before = os.path.getsize(resnet20)
    assert main(["prune", resnet20, "-o", resnet20]) == 0, capfd.readouterr().err
    assert os.path.getsize(resnet20) < before
    onnx.checker.check_model(onnx.load(resnet20), full_check=True)
    assert _files(tmp_path) == {"resnet20.onnx"}


GPT2 = os.path.join(os.path.dirname(__file__), "..", "models", "transformers", "gpt2.onnx")
GPT2_SHAPES = ["--input-shape", "input_ids=1,5"] + [
    arg for t in ("key", "value") for i in (0, 1) for arg in ("--input-shape", f"past_{t}_{i}=1,4,3,16")
]


def test_kv_cache_change_is_printed_and_reported(tmp_path, capfd):
    out, report = tmp_path / "g.onnx", tmp_path / "r.json"
    argv = ["prune", GPT2, "-o", str(out), "--ratio", "0", "--heads", "0.5", "--report", str(report), *GPT2_SHAPES]
    assert main(argv) == 0, capfd.readouterr().err
    printed = capfd.readouterr().out
    assert "input 'past_key_0' changes shape [?, 4, ?, 16] -> [?, 2, ?, 16]" in printed
    interface = json.loads(report.read_text())["interface"]
    assert len(interface) == 8 and all(len(c["kept"]["1"]) == 2 for c in interface)
    declared = {i.name: i.type.tensor_type.shape.dim[1].dim_value for i in onnx.load(str(out)).graph.input}
    assert declared["past_value_1"] == 2


def test_keep_cache_shape_keeps_interface(tmp_path, capfd):
    out = tmp_path / "g.onnx"
    argv = ["prune", GPT2, "-o", str(out), "--keep-cache-shape", *GPT2_SHAPES]
    assert main(argv) == 0, capfd.readouterr().err
    assert "changes shape" not in capfd.readouterr().out
    assert input_signature(onnx.load(str(out))) == input_signature(onnx.load(GPT2))


def test_resize_io_unknown_name(tmp_path, capfd):
    argv = ["prune", GPT2, "-o", str(tmp_path / "g.onnx"), "--resize-io", "hidden", *GPT2_SHAPES]
    assert main(argv) == 1
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'hidden'" in err and "present_key_0" in err
    assert not (tmp_path / "g.onnx").exists()
