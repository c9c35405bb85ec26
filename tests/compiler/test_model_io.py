import os
import sys

import numpy as np
import onnx
import onnx.helper
import onnx.parser
import onnx_ir as ir
import pytest
from support import conv_relu_conv

from onnxprune import model_io
from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import (
    load_model,
    make_sample_inputs,
    parse_input_shape,
    resolve_input_shapes,
    save_model,
)
from onnxprune.runtime.session import ort_session, run_session


def _raises(match: str):
    return pytest.raises(OnnxPruneError, match=match)


def _save_external(proto: onnx.ModelProto, path) -> None:
    proto = onnx.ModelProto.FromString(proto.SerializeToString())  # onnx.save edits its argument
    onnx.save(proto, path, save_as_external_data=True, location=os.path.basename(path) + ".data", size_threshold=0)


def _weights(model: ir.Model) -> dict[str, np.ndarray]:
    return {name: np.array(v.const_value.numpy()) for name, v in model.graph.initializers.items()}


# --------------------------------------------------------------------------- load


def test_load_from_path_and_proto(crc_path, crc_proto):
    from_path = load_model(crc_path)
    from_proto = load_model(crc_proto)
    assert [n.op_type for n in from_path.graph] == ["Conv", "Relu", "Conv"]
    assert _weights(from_path).keys() == _weights(from_proto).keys()


def test_load_keeps_external_data_lazy(tmp_path, crc_proto):
    path = tmp_path / "m.onnx"
    _save_external(crc_proto, path)
    model = load_model(path)
    tensors = [v.const_value for v in model.graph.initializers.values()]
    assert all(isinstance(t, ir.ExternalTensor) for t in tensors)
    # `raw` is the mmap; None means load_model read no weight bytes.
    assert all(t.raw is None for t in tensors)


def test_missing_path(tmp_path):
    with _raises("does not exist"):
        load_model(tmp_path / "nope.onnx")


def test_directory(tmp_path):
    with _raises("is a directory"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    "content",
    [np.random.default_rng(0).bytes(4096), b"this is a text file, not a model\n" * 10],
    ids=["random-bytes", "text-file"],
)
def test_not_onnx(tmp_path, content):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with _raises(r"model.onnx is not an ONNX model \(protobuf parse failed\)") as info:
        load_model(path)
    assert "\n" not in str(info.value)


def test_truncated_protobuf(tmp_path, crc_proto):
    data = crc_proto.SerializeToString()
    path = tmp_path / "half.onnx"
    path.write_bytes(data[: len(data) // 2])
    with _raises("is not an ONNX model"):
        load_model(path)


def test_missing_external_data_file(tmp_path, crc_proto):
    path = tmp_path / "m.onnx"
    _save_external(crc_proto, path)
    os.remove(str(path) + ".data")
    with _raises(r"external data file m.onnx.data .* is missing"):
        load_model(path)


def test_truncated_external_data_file(tmp_path, crc_proto):
    path = tmp_path / "m.onnx"
    _save_external(crc_proto, path)
    data_path = str(path) + ".data"
    with open(data_path, "r+b") as f:
        f.truncate(os.path.getsize(data_path) // 2)
    with _raises("is truncated"):
        load_model(path)


def test_unknown_domain():
    proto = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17, "acme.custom" : 1]>
        g (float[1,4] x) => (float[1,4] y) { y = acme.custom.Swish(x) }
    """)
    with _raises("unknown opset domain 'acme.custom'"):
        load_model(proto)


def test_model_local_function_domain_is_allowed():
    proto = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
        g (float[1,4] x) => (float[1,4] y) { y = local.double(x) }
        <domain: "local", opset_import: ["" : 17]>
        double (a) => (b) { b = Add(a, a) }
    """)
    load_model(proto)


QDQ = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,4] x) => (float[1,4] y) {
  s = Constant<value = float {0.1}>()
  z = Constant<value = uint8 {0}>()
  q = QuantizeLinear(x, s, z)
  y = DequantizeLinear(q, s, z)
}
"""

QOPERATOR = """
<ir_version: 8, opset_import: ["" : 17]>
g (uint8[1,1,4,4] x, float xs, uint8 xz, uint8[1,1,1,1] w, float ws, uint8 wz, float ys, uint8 yz)
  => (uint8[1,1,4,4] y) {
  y = QLinearConv(x, xs, xz, w, ws, wz, ys, yz)
}
"""

MS_QUANTIZED = """
<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
g (float[1,4] a, float[1,4] b) => (float[1,4] y) {
  s = Constant<value = float {0.1}>()
  z = Constant<value = uint8 {0}>()
  y = com.microsoft.QLinearAdd(a, s, z, b, s, z, s, z)
}
"""


@pytest.mark.parametrize("text", [QOPERATOR, MS_QUANTIZED], ids=["qoperator", "com.microsoft"])
def test_quantized_operators_are_refused_by_name(text):
    proto = onnx.parser.parse_model(text)
    with _raises("quantized in a form onnxprune does not prune .QLinear.*QDQ form instead"):
        load_model(proto)
    load_model(proto, allow_quantized=True)


def test_qdq_models_load():
    """QDQ (and dynamic) quantization is pruned, not refused: passes/rules/quantize.py."""
    assert [n.op_type for n in load_model(onnx.parser.parse_model(QDQ)).graph][2:] == ["QuantizeLinear", "DequantizeLinear"]


LOOP_BODY = """
  y = Loop <body = body (int64 i, bool c, float[2] acc) => (bool c_out, float[2] acc_out) {
     c_out = Identity(c)
     acc_out = Add(acc, acc)
  }> (n, cond, x)
"""


def test_control_flow_in_graph():
    proto = onnx.parser.parse_model(
        '<ir_version: 8, opset_import: ["" : 17]>\n'
        "g (float[2] x, int64 n) => (float[2] y) {\n"
        "  cond = Constant<value = bool {1}>()\n" + LOOP_BODY + "}"
    )
    proto.graph.node[1].name = "x"
    with _raises(r"control-flow op Loop \(node 'x'\) is not supported: export without control flow"):
        load_model(proto)


def test_control_flow_inside_function():
    proto = onnx.parser.parse_model(
        '<ir_version: 8, opset_import: ["" : 17, "local" : 1]>\n'
        "g (float[2] x, int64 n) => (float[2] y) { y = local.f(x, n) }\n"
        '<domain: "local", opset_import: ["" : 17]>\n'
        "f (x, n) => (y) {\n  cond = Constant<value = bool {1}>()\n" + LOOP_BODY + "}"
    )
    with _raises("control-flow op Loop .* in function local::f"):
        load_model(proto)


def test_no_inputs():
    proto = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g () => (float[1] y) { y = Constant<value = float[1] {1.0}>() }
    """)
    with _raises("has no graph inputs"):
        load_model(proto)


def test_no_outputs(crc_proto):
    del crc_proto.graph.output[:]
    with _raises("has no graph outputs"):
        load_model(crc_proto)


def test_ir_too_old(tmp_path, crc_proto):
    crc_proto.ir_version = 2
    path = tmp_path / "old.onnx"
    onnx.save(crc_proto, path)
    with _raises("IR version 2, too old"):
        load_model(path)


# --------------------------------------------------------------------------- save


def test_save_roundtrip_inline(tmp_path, crc_path):
    model = load_model(crc_path)
    out = tmp_path / "out.onnx"
    save_model(model, out)
    assert sorted(os.listdir(tmp_path)) == ["crc.onnx", "out.onnx"]
    again = load_model(out)
    for name, array in _weights(model).items():
        np.testing.assert_array_equal(_weights(again)[name], array)


def test_save_inlines_external_tensors_when_not_external(tmp_path, crc_proto):
    src = tmp_path / "src"
    src.mkdir()
    _save_external(crc_proto, src / "m.onnx")
    model = load_model(src / "m.onnx")
    out = tmp_path / "out.onnx"
    save_model(model, out, external_data=False)
    proto = onnx.load(out, load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)


def test_save_external_when_over_threshold(tmp_path, crc_path):
    model = load_model(crc_path)
    out = tmp_path / "big.onnx"
    save_model(model, out, external_data_threshold=100)
    assert os.path.exists(str(out) + ".data")
    proto = onnx.load(out, load_external_data=False)
    external = {t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
    assert "w2" in external  # 4*8*3*3 floats: over the inline limit
    locations = {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"big.onnx.data"}
    reloaded = load_model(out)
    for name, array in _weights(model).items():
        np.testing.assert_array_equal(_weights(reloaded)[name], array)


def test_save_over_the_file_it_was_loaded_from(tmp_path):
    # Big enough that every weight goes external, and different weights on save.
    proto = conv_relu_conv(width=64)
    path = tmp_path / "a.onnx"
    _save_external(proto, path)
    model = load_model(path)
    expected = _weights(model)
    # b1 becomes a small in-memory tensor, saved inline, so later offsets in the .data move.
    model.graph.initializers["b1"].const_value = ir.tensor(np.zeros(64, np.float32), name="b1")
    expected["b1"] = np.zeros(64, np.float32)
    save_model(model, path, external_data=True)
    assert sorted(os.listdir(tmp_path)) == ["a.onnx", "a.onnx.data"]
    for name, array in _weights(load_model(path)).items():
        np.testing.assert_array_equal(array, expected[name], err_msg=name)
    # The in-memory model still reads its own weights, and can be saved again.
    for name, array in _weights(model).items():
        np.testing.assert_array_equal(array, expected[name], err_msg=name)
    save_model(model, path, external_data=True)
    for name, array in _weights(load_model(path)).items():
        np.testing.assert_array_equal(array, expected[name], err_msg=name)


def test_failed_save_leaves_nothing(tmp_path, crc_path, monkeypatch):
    model = load_model(crc_path)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(model_io.onnx, "save", boom)
    out = tmp_path / "out.onnx"
    for external in (False, True):
        with _raises("could not save .*disk full"):
            save_model(model, out, external_data=external)
        assert sorted(os.listdir(tmp_path)) == ["crc.onnx"]


def test_failed_save_keeps_existing_file(tmp_path, crc_path, monkeypatch):
    before = open(crc_path, "rb").read()
    model = load_model(crc_path)
    monkeypatch.setattr(model_io.onnx, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with _raises("could not save"):
        save_model(model, crc_path)
    assert open(crc_path, "rb").read() == before


def test_save_into_missing_directory(tmp_path, crc_path):
    with _raises("does not exist"):
        save_model(load_model(crc_path), tmp_path / "no" / "m.onnx")


# --------------------------------------------------------------------------- shapes


def test_parse_input_shape():
    assert parse_input_shape("x=1,3,224,224") == ("x", (1, 3, 224, 224))
    assert parse_input_shape("input_ids = 2, 128") == ("input_ids", (2, 128))


@pytest.mark.parametrize(
    "spec, match",
    [("x", "expected NAME="), ("=1,2", "expected NAME="), ("x=", "expected NAME="),
     ("x=1,a", "'a' is not an integer"), ("x=1.5", "not an integer"), ("x=1,0", "must be positive"),
     ("x=1,-3", "must be positive")],
)
def test_parse_input_shape_errors(spec, match):
    with _raises(match):
        parse_input_shape(spec)


DYNAMIC = """
<ir_version: 8, opset_import: ["" : 17]>
g (int64[batch, seq] ids, float[batch, 3, 8, 8] img, float[1, 4] fixed) => (float[batch, seq] y) {
  y = Cast<to = 1>(ids)
}
"""


def test_resolve_defaults_batch_and_requires_other_dims():
    model = load_model(onnx.parser.parse_model(DYNAMIC))
    with _raises(r"input 'ids' axis 1 is dim_param 'seq' .* --input-shape ids=1,<seq>"):
        resolve_input_shapes(model)
    shapes = resolve_input_shapes(model, {"ids": (2, 16)})
    assert shapes == {"ids": (2, 16), "img": (1, 3, 8, 8), "fixed": (1, 4)}


def test_resolve_errors():
    model = load_model(onnx.parser.parse_model(DYNAMIC))
    with _raises("unknown input.*typo.*the model's inputs are ids, img, fixed"):
        resolve_input_shapes(model, {"typo": (1,), "ids": (1, 4)})
    with _raises("has rank 3 but the model declares rank 2"):
        resolve_input_shapes(model, {"ids": (1, 4, 4)})
    with _raises("sets axis 1 to 5 but the model fixes it at 4"):
        resolve_input_shapes(model, {"ids": (1, 4), "fixed": (1, 5)})


def test_resolve_excludes_initializers_listed_as_inputs(crc_proto):
    w1 = next(t for t in crc_proto.graph.initializer if t.name == "w1")
    crc_proto.graph.input.append(onnx.helper.make_tensor_value_info("w1", onnx.TensorProto.FLOAT, list(w1.dims)))
    assert resolve_input_shapes(load_model(crc_proto)) == {"x": (1, 3, 8, 8)}


MIXED_DTYPES = """
<ir_version: 8, opset_import: ["" : 17]>
g (float16[N, 4] h, bfloat16[N, 4] bf, double[N, 2] d, int64[N, 6] ids, int32[N, 2] i, bool[N, 3] mask)
  => (float16[N, 4] y) {
  y = Identity(h)
}
"""


def test_make_sample_inputs_dtypes_and_determinism():
    model = load_model(onnx.parser.parse_model(MIXED_DTYPES))
    shapes = resolve_input_shapes(model)
    feeds = make_sample_inputs(model, shapes, seed=3)
    assert {k: (str(v.dtype), v.shape) for k, v in feeds.items()} == {
        "h": ("float16", (1, 4)), "bf": ("bfloat16", (1, 4)), "d": ("float64", (1, 2)),
        "ids": ("int64", (1, 6)), "i": ("int32", (1, 2)), "mask": ("bool", (1, 3)),
    }
    assert feeds["ids"].min() >= 0 and feeds["ids"].max() < 10
    again = make_sample_inputs(model, shapes, seed=3)
    assert all(np.array_equal(feeds[k], again[k]) for k in feeds)
    other = make_sample_inputs(model, shapes, seed=4)
    assert not np.array_equal(feeds["d"], other["d"])
    assert make_sample_inputs(model, shapes, batch=5)["h"].shape == (5, 4)


# --------------------------------------------------------------------------- runtime


def test_ort_session_runs_model_with_external_data(tmp_path, crc_proto):
    path = tmp_path / "m.onnx"
    _save_external(crc_proto, path)
    model = load_model(path)
    feeds = make_sample_inputs(model, resolve_input_shapes(model))
    from_ir = ort_session(model).run(None, feeds)[0]
    from_path = ort_session(path).run(None, feeds)[0]
    from_proto = ort_session(crc_proto).run(None, feeds)[0]
    assert from_ir.shape == (1, 4, 8, 8)
    np.testing.assert_array_equal(from_ir, from_path)
    np.testing.assert_array_equal(from_ir, from_proto)


def test_ort_session_without_onnxruntime(crc_proto, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with _raises(r"pip install onnxprune\[cpu\]"):
        ort_session(crc_proto)


def test_ort_session_over_the_protobuf_limit_goes_through_a_file(crc_proto, monkeypatch):
    model = load_model(crc_proto)
    feeds = make_sample_inputs(model, resolve_input_shapes(model))
    expected = ort_session(crc_proto).run(None, feeds)[0]
    monkeypatch.setattr(model_io, "FILE_HANDOFF_BYTES", 100)  # pretend the weights are large
    assert model_io.prefers_file(model)
    np.testing.assert_array_equal(ort_session(model).run(None, feeds)[0], expected)


def test_run_session_handles_bfloat16():
    proto = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (bfloat16[2, 3] x) => (bfloat16[2, 3] y, float[2, 3] z) {
          y = Identity(x)
          z = Cast<to = 1>(x)
        }
    """)
    model = load_model(proto)
    feeds = make_sample_inputs(model, resolve_input_shapes(model))
    out = run_session(ort_session(model), feeds)
    assert out["y"].dtype == feeds["x"].dtype
    np.testing.assert_array_equal(out["y"], feeds["x"])
    np.testing.assert_array_equal(out["z"], feeds["x"].astype(np.float32))


def test_run_session_failure_is_one_line(crc_proto):
    with _raises("ONNX Runtime failed running the model") as info:
        run_session(ort_session(crc_proto), {"x": np.zeros((1, 5, 8, 8), np.float32)})
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- lazy reading


def test_large_single_file_models_are_read_without_their_weights(tmp_path, monkeypatch):
    """Above LAZY_FILE_BYTES the weights stay in the .onnx file (mapped when used): the
    values are the file's, and pruning gives the same bytes as reading it whole."""
    from onnxprune.compiler.pipeline import prune
    from onnxprune.proto_scan import read_lazily

    path = tmp_path / "m.onnx"
    proto = conv_relu_conv(width=640)
    onnx.save(proto, path)
    lazy = read_lazily(str(path))  # the weights (69 and 92 kB), not the biases (2.5 kB)
    assert {t.name for t in lazy.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL} == {"w1", "w2"}
    whole = prune(str(path), ratio=0.5)
    monkeypatch.setattr(model_io, "LAZY_FILE_BYTES", 0)
    model = load_model(path)
    assert isinstance(model.graph.initializers["w1"].const_value, ir.ExternalTensor)
    for t in proto.graph.initializer:
        np.testing.assert_array_equal(model.graph.initializers[t.name].const_value.numpy(), onnx.numpy_helper.to_array(t))
    lazily = prune(str(path), ratio=0.5)
    out_a, out_b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    save_model(whole.model, out_a)
    save_model(lazily.model, out_b)
    assert out_a.read_bytes() == out_b.read_bytes()
    assert lazily.report["verification"]["ok"]


@pytest.mark.parametrize("ratio, width", [("0", 640), ("0.5", 320)])
def test_overwriting_a_lazily_read_model_in_place(tmp_path, monkeypatch, ratio, width):
    """The weights of a lazily read model live in the very file being replaced."""
    from onnxprune.cli import main

    monkeypatch.setattr(model_io, "LAZY_FILE_BYTES", 0)
    path = tmp_path / "m.onnx"
    original = conv_relu_conv(width=640)
    onnx.save(original, path)
    assert main(["prune", str(path), "-o", str(path), "--ratio", ratio]) == 0
    pruned = onnx.load(path)
    onnx.checker.check_model(pruned, full_check=True)
    w1 = onnx.numpy_helper.to_array(next(t for t in pruned.graph.initializer if t.name == "w1"))
    assert w1.shape[0] == width
    if ratio == "0":
        np.testing.assert_array_equal(w1, onnx.numpy_helper.to_array(original.graph.initializer[0]))


def test_truncated_large_file_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(model_io, "LAZY_FILE_BYTES", 0)
    path = tmp_path / "cut.onnx"
    path.write_bytes(conv_relu_conv(width=640).SerializeToString()[:-70000])
    with _raises("not an ONNX model"):
        load_model(path)
