"""Static shapes of every value: ONNX shape inference on a light copy (weights as typed
inputs, never serialised), and where inference gives up, one ONNX Runtime run with the
unresolved values as extra outputs. Also `InferValueShapesPass` (annotate a rewritten
model's values) and `shape_lookup` (a `shape_of(value)` callback from a shape table).

What this does not do: modify the model it reads (except `InferValueShapesPass`, whose
job that is), or guess shapes: a value neither inference nor a run can size is absent.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping

import onnx
import onnx.shape_inference
import onnx_ir as ir

from onnxprune.model_io import (
    graph_inputs,
    make_sample_inputs,
    prefers_file,
    resolve_input_shapes,
    save_model,
)
from onnxprune.runtime.session import ort_session, run_session

Shape = tuple[int, ...]
ShapeOf = Callable[[ir.Value], "Shape | None"]

# Initializers above this size are handed to shape inference as typed inputs, not data.
_INLINE_BYTES = 1024


def shape_lookup(model: ir.Model, shapes) -> ShapeOf:
    """A `shape_of(value)` callback from `shapes`: a callback (returned as is), a mapping
    of value name -> shape, or a mapping naming only graph inputs (or None), which
    `static_shapes` completes first. Constants not in the table answer with their own
    shape."""
    if callable(shapes):
        return shapes
    input_names = {v.name for v in graph_inputs(model)}
    if shapes is None or set(shapes) <= input_names:
        shapes = static_shapes(model, shapes)
    table = dict(shapes)

    def shape_of(value: ir.Value) -> Shape | None:
        shape = table.get(value.name)
        if shape is None and value.const_value is not None:
            return tuple(value.const_value.shape)
        return shape

    return shape_of


def static_shapes(
    model: ir.Model, input_shapes: Mapping[str, Shape] | None = None, feeds: Mapping | None = None
) -> dict[str, Shape]:
    """Concrete shape of every tensor value in the top-level graph, by value name.

    Graph inputs get `resolve_input_shapes(model, input_shapes)`; ONNX shape inference
    (strict_mode=False, data_prop=True) runs on a copy that carries large initializers
    as typed inputs rather than data, so no weight is serialised. Values it leaves
    without a fully static shape are measured by running ONNX Runtime once with them as
    extra outputs, on `feeds` when given (models whose inputs must agree, e.g. sequence
    lengths), random inputs otherwise. Values whose shape is still unknown are absent.
    Does not modify `model`.
    """
    concrete = resolve_input_shapes(model, input_shapes)
    proto = _shape_inference_proto(model, concrete)
    inferred = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)
    shapes: dict[str, Shape] = dict(concrete)
    for info in [*inferred.graph.value_info, *inferred.graph.output]:
        shape = _static_dims(info)
        if shape is not None:
            shapes[info.name] = shape
    for value in model.graph.initializers.values():
        if value.const_value is not None:
            shapes[value.name] = tuple(value.const_value.shape)
    missing = [
        v.name for node in model.graph for v in node.outputs if v is not None and v.name and v.name not in shapes
    ]
    if missing:
        shapes.update(_measured_shapes(model, concrete, missing, feeds))
    return shapes


def _symbolic_inference(model: ir.Model) -> onnx.ModelProto:
    proto = _shape_inference_proto(model, {})
    return onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)


class InferValueShapesPass(ir.passes.InPlacePass):
    """Annotate every intermediate value with its inferred shape (symbolic dims kept).

    Same result as onnx-ir's ShapeInferencePass for our purpose, but linear in the graph
    size: onnx-ir 1.1.0's helper checks list membership per initializer (quadratic; 21 s
    of 31 s at 50k nodes). Graph inputs and outputs keep their declared shapes."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        inferred = _symbolic_inference(model)
        infos = {info.name: info for info in inferred.graph.value_info}
        io = set(model.graph.inputs) | set(model.graph.outputs)
        changed = False
        for node in model.graph:
            for value in node.outputs:
                info = infos.get(value.name) if value is not None else None
                if info is None or value in io or not info.type.tensor_type.HasField("shape"):
                    continue
                dims = [
                    d.dim_value if d.HasField("dim_value") else ir.SymbolicDim(d.dim_param or None)
                    for d in info.type.tensor_type.shape.dim
                ]
                value.shape = ir.Shape(dims)
                if value.dtype is None and info.type.tensor_type.elem_type:
                    value.dtype = ir.DataType(info.type.tensor_type.elem_type)
                changed = True
        return ir.passes.PassResult(model, modified=changed)


def symbolic_shapes(model: ir.Model) -> dict[str, tuple[int | None, ...]]:
    """Shapes with the model's own symbolic inputs: a dim is an int only where it is
    the same for every input size (None where it follows a symbolic dim or is unknown).
    Used to tell which shape values may be folded into constants. Does not modify `model`."""
    return {
        name: tuple(d if isinstance(d, int) else None for d in dims) for name, dims in symbolic_dims(model).items()
    }


def symbolic_dims(model: ir.Model) -> dict[str, tuple[int | str | None, ...]]:
    """`symbolic_shapes` with the names of symbolic dims kept (a str: ONNX inference
    carries a dim_param such as "batch" through the ops it understands)."""
    return symbolic_info(model)[0]


def symbolic_info(model: ir.Model) -> tuple[dict[str, tuple], dict[str, ir.DataType]]:
    """(`symbolic_dims`, the element type of every value ONNX inference could type),
    from one inference run. Does not modify `model`."""
    inferred = _symbolic_inference(model)
    dims: dict[str, tuple[int | str | None, ...]] = {}
    dtypes: dict[str, ir.DataType] = {}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        tt = info.type.tensor_type if info.type.HasField("tensor_type") else None
        if tt is not None and tt.HasField("shape"):
            dims[info.name] = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim
            )
        if tt is not None and tt.elem_type:
            dtypes[info.name] = ir.DataType(tt.elem_type)
    return dims, dtypes


def _shape_inference_proto(model: ir.Model, concrete: Mapping[str, Shape]) -> onnx.ModelProto:
    """A ModelProto of `model`'s graph for shape inference, built without mutating `model`.

    Same idea as onnx_ir's call_onnx_api, but through a GraphView so the model is never
    touched: large initializers become typed graph inputs; declared intermediate and
    output shapes are dropped so stale annotations (e.g. from before pruning) cannot
    contradict inference.
    """
    graph = model.graph
    big = [
        v for v in graph.initializers.values() if v.const_value is None or v.const_value.nbytes > _INLINE_BYTES
    ]
    big_names = {v.name for v in big}
    small = [v for v in graph.initializers.values() if v.name not in big_names]
    inputs = [v for v in graph.inputs if v.name not in big_names] + big
    view = ir.GraphView(
        inputs, graph.outputs, nodes=graph, initializers=small, opset_imports=graph.opset_imports, name=graph.name
    )
    light = ir.Model(view, ir_version=model.ir_version, functions=list(model.functions.values()))
    proto = ir.serde.serialize_model(light)
    by_name = {v.name: v for v in big}
    for info in proto.graph.input:
        if info.name in concrete:
            _set_dims(info, concrete[info.name])
        elif info.name in by_name and by_name[info.name].const_value is not None:
            tensor = by_name[info.name].const_value
            info.type.tensor_type.elem_type = tensor.dtype.value
            _set_dims(info, tuple(tensor.shape))
    del proto.graph.value_info[:]
    for info in proto.graph.output:
        info.type.tensor_type.ClearField("shape")
    return proto


def _set_dims(info: onnx.ValueInfoProto, dims: Shape) -> None:
    shape = info.type.tensor_type.shape
    shape.ClearField("dim")
    for d in dims:
        shape.dim.add().dim_value = int(d)


def _static_dims(info: onnx.ValueInfoProto) -> Shape | None:
    if not info.type.HasField("tensor_type") or not info.type.tensor_type.HasField("shape"):
        return None
    dims = info.type.tensor_type.shape.dim
    if not all(d.HasField("dim_value") for d in dims):
        return None
    return tuple(d.dim_value for d in dims)


def _measured_shapes(model: ir.Model, concrete: Mapping[str, Shape], names: list[str], feeds=None) -> dict[str, Shape]:
    """Shapes of `names` read from one ONNX Runtime run with them exposed as outputs.

    Used only where inference gave up (e.g. a Reshape fed by a computed shape). Works on
    a copy made through a temporary save; weights stay external when they already are.
    """
    with tempfile.TemporaryDirectory(prefix="onnxprune-shapes-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        save_model(model, path, external_data=prefers_file(model))
        proto = onnx.load(path, load_external_data=False)
        existing = {o.name for o in proto.graph.output}
        proto.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in existing)
        onnx.save(proto, path)
        arrays = run_session(ort_session(path), feeds if feeds is not None else make_sample_inputs(model, concrete))
    return {name: tuple(a.shape) for name, a in arrays.items() if name in names and hasattr(a, "shape")}
