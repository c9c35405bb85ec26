"""Reading and replacing constants (initializers and Constant-node outputs) in the IR.

Replacement is copy-on-write: a constant read by other nodes too is never changed
under them; the node being edited gets a new initializer instead.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxprune.passes.name_nodes import unique_name

_CONSTANT_ATTRS = ("value_float", "value_floats", "value_int", "value_ints")


def _constant_node(value: ir.Value) -> ir.Node | None:
    prod = value.producer()
    if prod is not None and prod.op_type == "Constant" and prod.domain in ("", "ai.onnx"):
        return prod
    return None


def is_const(value: ir.Value | None) -> bool:
    if value is None:
        return False
    if value.const_value is not None and not value.is_graph_input():
        return True
    return _constant_node(value) is not None


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The constant behind a value (initializer or Constant node), else None."""
    if value is None:
        return None
    if value.const_value is not None and not value.is_graph_input():
        return value.const_value.numpy()
    prod = _constant_node(value)
    if prod is None:
        return None
    attr = prod.attributes.get("value")
    if attr is not None:
        return attr.value.numpy()
    for key in _CONSTANT_ATTRS:
        attr = prod.attributes.get(key)
        if attr is not None:
            return np.asarray(attr.value, dtype=np.float32 if "float" in key else np.int64)
    return None


def fresh_name(graph: ir.Graph, base: str) -> str:
    """A value name not used anywhere in the graph (cached on the graph's meta)."""
    taken = graph.meta.get("onnxprune_names")
    if taken is None:
        taken = {v.name for n in graph for v in (*n.inputs, *n.outputs) if v is not None}
        taken |= set(graph.initializers) | {v.name for v in graph.inputs}
        graph.meta["onnxprune_names"] = taken
    return unique_name(base, taken, sep="")


def new_initializer(graph: ir.Graph, base: str, array: np.ndarray) -> ir.Value:
    name = fresh_name(graph, base)
    value = ir.Value(
        name=name,
        shape=ir.Shape(array.shape),
        type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
        const_value=ir.tensor(array, name=name),
    )
    graph.register_initializer(value)
    return value


def set_value_array(value: ir.Value, array: np.ndarray) -> None:
    """Replace a constant's data in place, for every reader."""
    tensor = ir.tensor(array, name=value.name)
    prod = _constant_node(value)
    if prod is not None:
        prod.attributes["value"] = ir.AttrTensor("value", tensor)
        for key in _CONSTANT_ATTRS:
            prod.attributes.pop(key, None)
    else:
        value.const_value = tensor
    value.shape = ir.Shape(array.shape)


def set_const_input(graph: ir.Graph, node: ir.Node, i: int, array: np.ndarray) -> None:
    """Give `node.inputs[i]` new constant data without changing it for other readers."""
    old = node.inputs[i]
    old_arr = const_array(old)
    array = np.asarray(array, dtype=old_arr.dtype if old_arr is not None else None)
    if len(old.uses()) == 1 and not old.is_graph_output():
        set_value_array(old, array)
    else:
        node.replace_input_with(i, new_initializer(graph, f"{old.name or 'const'}_pruned", array))


def _dequantized_from(value: ir.Value | None) -> ir.Node | None:
    """The DequantizeLinear node making `value` from a constant (a QDQ model's weight)."""
    prod = None if value is None else value.producer()
    if prod is None or prod.op_type != "DequantizeLinear" or prod.domain not in ("", "ai.onnx"):
        return None
    return prod if is_const(prod.inputs[0]) and all(v is None or is_const(v) for v in prod.inputs[1:]) else None


def is_weight(value: ir.Value | None) -> bool:
    """A constant, or a quantized constant made float by DequantizeLinear (QDQ models)."""
    return is_const(value) or _dequantized_from(value) is not None


def weight_storage(value: ir.Value) -> ir.Value:
    """The constant a weight is stored in: itself, or the quantized one behind it."""
    prod = _dequantized_from(value)
    return value if prod is None else prod.inputs[0]


def weight_array(value: ir.Value | None) -> np.ndarray | None:
    """A weight's float values: the constant, or the dequantized one
    ((q - zero_point) · scale, per tensor or along the node's axis)."""
    prod = _dequantized_from(value)
    if prod is None:
        return const_array(value)
    q = const_array(prod.inputs[0]).astype(np.float64)
    scale = const_array(prod.inputs[1]).astype(np.float64)
    zero = const_array(prod.inputs[2]).astype(np.float64) if len(prod.inputs) > 2 and prod.inputs[2] is not None else 0.0
    if np.ndim(scale) == 1 and scale.size > 1:
        attr = prod.attributes.get("axis")
        axis = (attr.value if attr is not None else 1) % q.ndim
        shape = [1] * q.ndim
        shape[axis] = scale.size
        scale = scale.reshape(shape)
        zero = np.reshape(zero, shape) if np.ndim(zero) == 1 else zero
    return (q - zero) * scale
