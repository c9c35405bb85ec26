import onnx
import onnx.numpy_helper
import onnx.parser
import pytest

from onnxprune.compiler.verify import verify_model
from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import load_model


def _arrays(proto):
    return {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}


def _with_arrays(proto, arrays):
    out = onnx.ModelProto.FromString(proto.SerializeToString())
    del out.graph.initializer[:]
    out.graph.initializer.extend(onnx.numpy_helper.from_array(a, name) for name, a in arrays.items())
    return out


def _prune_hidden(proto, keep):
    """Remove the first conv's output channels not in `keep`, by hand."""
    w = _arrays(proto)
    return _with_arrays(proto, {"w1": w["w1"][keep], "b1": w["b1"][keep], "w2": w["w2"][:, keep], "b2": w["b2"]})


def test_hand_pruned_model_verifies(crc_proto):
    pruned = _prune_hidden(crc_proto, [0, 2, 5])
    result = verify_model(load_model(crc_proto), load_model(pruned), {"x": (2, 3, 8, 8)})
    assert result.ok and result.checker_ok and result.message == "ok"
    (row,) = result.outputs
    assert (row.name, row.dtype_before, row.shape_before) == ("y", "float32", (2, 4, 8, 8))
    assert (row.dtype_after, row.shape_after) == (row.dtype_before, row.shape_before)
    assert row.max_abs_diff > 0 and row.rel_diff > 0  # pruning changed the numbers: reported, not failed


def test_unpruned_model_has_zero_diff(crc_proto):
    result = verify_model(load_model(crc_proto), load_model(crc_proto), None)
    assert result.ok and result.outputs[0].max_abs_diff == 0.0


def test_wrong_output_shape(crc_proto):
    w = _arrays(crc_proto)
    pruned = _with_arrays(crc_proto, {**w, "w2": w["w2"][:3], "b2": w["b2"][:3]})
    expected = r"failed verification: .*output 'y' is float32\[1, 3, 8, 8\], expected float32\[1, 4, 8, 8\]"
    with pytest.raises(OnnxPruneError, match=expected):
        verify_model(load_model(crc_proto), load_model(pruned), None)


def test_renamed_output(crc_proto):
    renamed = onnx.ModelProto.FromString(crc_proto.SerializeToString())
    renamed.graph.node[-1].output[0] = "logits"
    renamed.graph.output[0].name = "logits"
    result = verify_model(load_model(crc_proto), load_model(renamed), None, raise_on_failure=False)
    assert not result.ok and result.checker_ok
    assert "graph outputs changed from [('y', 'FLOAT')] to [('logits', 'FLOAT')]" in result.message


def test_changed_input_signature(crc_proto):
    changed = onnx.ModelProto.FromString(crc_proto.SerializeToString())
    changed.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    expected = r"graph inputs changed from x:FLOAT\['N', 3, 8, 8\] to x:FLOAT\['batch', 3, 8, 8\]"
    with pytest.raises(OnnxPruneError, match=expected):
        verify_model(load_model(crc_proto), load_model(changed), None)


def test_model_failing_the_checker(crc_proto):
    broken = onnx.ModelProto.FromString(crc_proto.SerializeToString())
    # A Conv whose weight is rank 3 on a rank-4 input: well-formed protobuf, invalid ONNX.
    w = _arrays(broken)
    broken = _with_arrays(broken, {**w, "w2": w["w2"][:, :, 0]})
    result = verify_model(load_model(crc_proto), load_model(broken), None, raise_on_failure=False)
    assert not result.ok and not result.checker_ok
    assert result.message.startswith("ONNX checker:")
    with pytest.raises(OnnxPruneError, match="pruned model failed verification: ONNX checker:"):
        verify_model(load_model(crc_proto), load_model(broken), None)


def test_com_microsoft_ops_use_the_light_checker():
    proto = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
        g (float[N, 4] a) => (float[N, 4] y) {
          h = com.microsoft.Gelu(a)
          y = Relu(h)
        }
    """)
    result = verify_model(load_model(proto), load_model(proto), None)
    assert result.ok and result.checker_ok
