"""Model input/output: load and validate, save atomically, concrete input shapes and
sample inputs. The bottom layer: it imports nothing else from onnxprune but the error
type, and everything else may import it (ONNX Runtime sessions are `runtime/session.py`).

Every user-facing failure is an `OnnxPruneError` whose message is one line saying what
is wrong and what to do about it.

What this module does not do: it never rewrites a model's graph. The one exception is
documented on `save_model` (tensors whose backing file is overwritten are re-pointed at
a memory map of the old contents so the in-memory model stays valid).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Mapping

import numpy as np
import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError
from onnx_ir.passes.common import RemoveInitializersFromInputsPass

from onnxprune.errors import OnnxPruneError
from onnxprune.passes.name_nodes import NameNodesPass
from onnxprune.proto_scan import read_lazily

# Domains whose ops we know how to reason about; anything else is a custom op we
# cannot propagate channel removals through.
KNOWN_DOMAINS = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training", "ai.onnx.training"}
)
# IR 3 is the first version with opset_import; older files predate the ops we rewrite.
MIN_IR_VERSION = 3
# Protobuf refuses messages of 2 GiB or more; keep a margin for the graph itself.
EXTERNAL_DATA_THRESHOLD = int(1.8 * 2**30)
# Tensors at or below this size stay inline even when a model is saved with external data.
_INLINE_TENSOR_BYTES = 1024
# Single-file models from this size on are read without their weights (proto_scan.py).
LAZY_FILE_BYTES = 64 * 2**20
# Models whose weights exceed this reach ONNX Runtime and the checker as files, not
# bytes: from bytes ONNX Runtime holds the bytes, the parsed proto and its own copy.
FILE_HANDOFF_BYTES = 256 * 2**20

# Quantized ops onnxprune refuses: the QOperator form and block-quantized weights. QDQ
# and dynamic quantization (QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear,
# MatMulInteger, ConvInteger) are pruned: passes/rules/quantize.py.
_QUANTIZED_OPS = frozenset({
    "QGemm", "QAttention", "QEmbedLayerNormalization", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM",
    "MatMulIntegerToFloat", "MatMulNBits", "MatMulBnb4", "MatMulFpQ4", "GatherBlockQuantized", "QMoE", "MulInteger",
    "QuantizeWithOrder", "DequantizeWithOrder", "QuantizeBFP", "DequantizeBFP",
})
# QLinearConv, QLinearAdd, ... and the com.microsoft QOrdered* family.
_QUANTIZED_PREFIXES = ("QLinear", "QOrdered")
_CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan", "SequenceMap"})


# --------------------------------------------------------------------------- loading


def load_model(source: str | os.PathLike | onnx.ModelProto, *, allow_quantized: bool = False) -> ir.Model:
    """Load a model into onnx-ir and check that onnxprune can work on it.

    From a path, external data stays memory-mapped: no weight is read here (external
    files are only `stat`-ed). From a ModelProto, external data locations resolve
    relative to the current directory; pass the path instead when the model has
    external data. Initializers also listed as graph inputs (older exporters) become
    plain constants, as ONNX Runtime treats them unless fed, and interface dims declared
    as -1 become dynamic. Names unnamed nodes and
    renames duplicates (`NameNodesPass`): a node's name is its identity in everything
    onnxprune does. Does not run shape inference or the ONNX checker.
    """
    if isinstance(source, onnx.ModelProto):
        label, proto, base_dir = "the given ModelProto", source, None
    else:
        label = os.fspath(source)
        proto, base_dir = _read_proto(label), os.path.dirname(label)
    _check_unique_initializers(proto, label)
    try:
        model = ir.serde.deserialize_model(proto)
    except Exception as err:  # onnx-ir raises several types; all mean "unreadable"
        raise OnnxPruneError(
            f"{label} could not be read into onnx-ir ({first_line(err)}): re-export the model with a current exporter"
        ) from err
    if base_dir is not None:
        ir.external_data.set_base_dir(model.graph, base_dir)
    return prepare(model, label, allow_quantized=allow_quantized)


def prepare(model: ir.Model, label: str = "the model", *, allow_quantized: bool = False) -> ir.Model:
    """What `load_model` does once a model is in onnx-ir (also for a copy made with
    `ir.Model.clone`): initializers listed as inputs become constants, every node gets a
    unique name, and `check_supported` runs. Returns `model`, changed in place."""
    RemoveInitializersFromInputsPass()(model)
    _negative_dims_are_dynamic(model)
    # Node names are node identity from here on (analysis, blocks, probe, plans).
    NameNodesPass()(model)
    check_supported(model, allow_quantized=allow_quantized, label=label)
    return model


def _negative_dims_are_dynamic(model: ir.Model) -> None:
    """A graph input or output dim declared as -1 (Paddle's and some older exporters'
    way of saying "any size") becomes an unnamed symbolic dim, which is what ONNX
    Runtime makes of it: --input-shape then sets it like any other dynamic dim."""
    for value in (*model.graph.inputs, *model.graph.outputs):
        shape = value.shape
        if shape is not None and any(isinstance(d, int) and d < 0 for d in shape):
            value.shape = ir.Shape([ir.SymbolicDim(None) if isinstance(d, int) and d < 0 else d for d in shape])


def _read_proto(path: str) -> onnx.ModelProto:
    if not os.path.exists(path):
        raise OnnxPruneError(f"{path} does not exist: check the path to the .onnx file")
    if os.path.isdir(path):
        raise OnnxPruneError(f"{path} is a directory, not a model: pass the .onnx file inside it")
    try:
        if os.path.getsize(path) >= LAZY_FILE_BYTES:
            # Weights stay in the file, mapped when used (a large model is not read twice).
            return read_lazily(path)
        # External data is not read: onnx-ir maps it when a tensor is used.
        return onnx.load(path, load_external_data=False)
    except DecodeError as err:
        raise OnnxPruneError(
            f"{path} is not an ONNX model (protobuf parse failed): pass a .onnx file exported by "
            "torch.onnx.export, tf2onnx or paddle2onnx (a truncated download also fails this way)"
        ) from err
    except Exception as err:
        raise OnnxPruneError(
            f"{path} could not be read as an ONNX model ({first_line(err)}): pass a .onnx file exported by "
            "torch.onnx.export, tf2onnx or paddle2onnx"
        ) from err


def _check_unique_initializers(proto: onnx.ModelProto, label: str) -> None:
    """Two initializers of one name: the checker rejects the model and runtimes disagree
    on which copy counts (ONNX Runtime's choice changed between versions), so no pruned
    model could be said to compute what the original does."""
    seen: set[str] = set()
    for tensor in proto.graph.initializer:
        if tensor.name in seen:
            raise OnnxPruneError(
                f"{label} has two initializers named '{tensor.name}' (the ONNX checker rejects this, and runtimes "
                "differ on which one counts): re-export the model, or keep one copy"
            )
        seen.add(tensor.name)


def check_supported(model: ir.Model, *, allow_quantized: bool = False, label: str = "model") -> None:
    """Raise OnnxPruneError for the first property of `model` that onnxprune cannot handle.

    Checks, in order: IR version, graph inputs/outputs, external data files, opset
    domains (known, and declared for every node), values every node reads (defined),
    control flow, quantized ops other than QDQ and dynamic quantization. Does not validate the graph against the ONNX
    spec (that is `onnx.checker`'s job, run by verify).
    """
    checks = list(_CHECKS)
    if allow_quantized:
        checks.remove(_check_quantized)
    for check in checks:
        check(model, label)


def _check_ir_version(model: ir.Model, label: str) -> None:
    # A parse that "succeeds" with ir_version 0 and an empty graph is not a model at all.
    if not model.ir_version and len(model.graph) == 0 and not model.graph.outputs:
        raise OnnxPruneError(
            f"{label} is not an ONNX model (no ir_version and no graph): pass a .onnx file exported by "
            "torch.onnx.export, tf2onnx or paddle2onnx"
        )
    if model.ir_version < MIN_IR_VERSION:
        raise OnnxPruneError(
            f"{label} uses ONNX IR version {model.ir_version}, too old to read (need >= {MIN_IR_VERSION}): "
            "re-export it, or upgrade it with onnx.version_converter.convert_version"
        )


def _check_io(model: ir.Model, label: str) -> None:
    if not graph_inputs(model):
        raise OnnxPruneError(
            f"{label} has no graph inputs (only constants): onnxprune needs a model that takes an input; "
            "re-export with inputs"
        )
    if not model.graph.outputs:
        raise OnnxPruneError(f"{label} has no graph outputs: re-export the model with its outputs declared")


def _check_external_data(model: ir.Model, label: str) -> None:
    for graph in model.graphs():
        for value in graph.initializers.values():
            tensor = value.const_value
            if not isinstance(tensor, ir.ExternalTensor):
                continue
            path = tensor.path
            if not os.path.isfile(path):
                raise OnnxPruneError(
                    f"external data file {tensor.location!s} for initializer '{value.name}' of {label} is missing "
                    f"(looked for {path}): keep the .data file next to the .onnx file it was saved with"
                )
            needed = (tensor.offset or 0) + (tensor.length if tensor.length is not None else tensor.nbytes)
            size = os.path.getsize(path)
            if size < needed:
                raise OnnxPruneError(
                    f"external data file {path} is truncated ({size} bytes, "
                    f"initializer '{value.name}' needs {needed}): "
                    "copy or export the .data file again"
                )


def _check_domains(model: ir.Model, label: str) -> None:
    # Model-local functions define their own domains; calling them is fine.
    local = {domain for domain, _name, _overload in model.functions}
    allowed = KNOWN_DOMAINS | local
    # An import no node uses is inert (ORT's optimizer leaves some behind); only a
    # domain that nodes actually use can hide computation we cannot see through.
    used = {node.domain for node, _where in _all_nodes(model)}
    for domain in model.opset_imports:
        if domain not in allowed and domain in used:
            raise OnnxPruneError(
                f"{label} imports unknown opset domain '{domain}' (custom ops): "
                "onnxprune cannot see through custom ops; "
                "export with standard ONNX ops only"
            )
    for node, _where in _all_nodes(model):
        if node.domain not in allowed:
            raise OnnxPruneError(
                f"op {node.op_type} (node '{node.name}') is in unknown domain '{node.domain}' (custom op): "
                "export with standard ONNX ops only"
            )


def _check_control_flow(model: ir.Model, label: str) -> None:
    for node, where in _all_nodes(model):
        has_subgraph = any(
            attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for attr in node.attributes.values()
        )
        if node.op_type in _CONTROL_FLOW_OPS or has_subgraph:
            raise OnnxPruneError(
                f"control-flow op {node.op_type} (node '{node.name}'{where}) is not supported: "
                "export without control flow (e.g. a static loop unrolled)"
            )


def _check_quantized(model: ir.Model, label: str) -> None:
    for node, where in _all_nodes(model):
        if node.op_type in _QUANTIZED_OPS or node.op_type.startswith(_QUANTIZED_PREFIXES):
            raise OnnxPruneError(
                f"{label} is quantized in a form onnxprune does not prune ({node.op_type}, node '{node.name}'{where}): "
                "quantize to QDQ form instead (onnxruntime.quantization with QuantFormat.QDQ), or prune the float "
                "model, then quantize"
            )


def _check_opsets(model: ir.Model, label: str) -> None:
    """Every domain the graph's nodes use needs an opset version (a file cut short, or
    edited by hand, loses its opset_import and no op can be interpreted)."""
    declared = {"" if d == "ai.onnx" else d for d in model.opset_imports}
    for node in model.graph:
        domain = "" if node.domain == "ai.onnx" else node.domain
        if domain not in declared:
            name = f"'{domain}'" if domain else "ai.onnx (the standard ops)"
            raise OnnxPruneError(
                f"{label} declares no opset version for domain {name}, which node '{node.name}' uses "
                "(a truncated or hand-edited file?): re-export the model"
            )


def _check_values_defined(model: ir.Model, label: str) -> None:
    """Every value a node reads, and every graph output, is made by a node, is a graph
    input or is an initializer."""
    graph = model.graph

    def defined(value: ir.Value) -> bool:
        return value.producer() is not None or value.is_graph_input() or value.const_value is not None or (
            value.name in graph.initializers
        )

    for node in graph:
        for value in node.inputs:
            if value is not None and not defined(value):
                raise OnnxPruneError(
                    f"node '{node.name}' of {label} reads '{value.name}', which no node, graph input or initializer "
                    "provides: the model is incomplete (a missing initializer?); re-export it"
                )
    for value in graph.outputs:
        if not defined(value):
            raise OnnxPruneError(
                f"graph output '{value.name}' of {label} is made by no node: the model is incomplete; re-export it"
            )


_CHECKS = (
    _check_ir_version, _check_io, _check_external_data, _check_domains, _check_opsets, _check_values_defined,
    _check_control_flow, _check_quantized,
)


def _all_nodes(model: ir.Model) -> Iterator[tuple[ir.Node, str]]:
    """Every node of the main graph, its subgraphs and the model's functions, with where it lives."""
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        yield node, ""
    for function in model.functions.values():
        where = f" in function {function.domain}::{function.name}"
        for node in ir.traversal.RecursiveGraphIterator(function):
            yield node, where


def graph_inputs(model: ir.Model) -> list[ir.Value]:
    """The graph inputs a caller must feed: initializers listed as inputs are excluded."""
    return [v for v in model.graph.inputs if v.name not in model.graph.initializers]


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


# --------------------------------------------------------------------------- saving


def initializer_bytes(model: ir.Model) -> int:
    """Total bytes of every initializer (main graph and subgraphs); reads no tensor data."""
    return sum(
        v.const_value.nbytes for g in model.graphs() for v in g.initializers.values() if v.const_value is not None
    )


def save_model(
    model: ir.Model,
    path: str | os.PathLike,
    *,
    external_data: bool | None = None,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
) -> None:
    """Write `model` to `path` atomically (see `StagedOutputs.model`)."""
    with StagedOutputs() as out:
        out.model(model, path, external_data=external_data, external_data_threshold=external_data_threshold)
        out.commit()


class StagedOutputs:
    """Files written under temporary names beside their destinations and renamed into
    place together by `commit`, so a run leaves all of its outputs or none of them.

    Staging (the part that can fail: disk full, no permission, a bad model) writes into
    a temporary directory next to each destination; `commit` only renames. Leaving the
    `with` block without a commit (an error, an interrupt) removes everything staged.
    Not atomic across the renames themselves: a crash between two renames leaves the
    first in place. Callers who must not be interrupted there block signals around
    `commit` (the CLI does).
    """

    def __init__(self):
        self._moves: list[tuple[str, str, object]] = []  # (staged file, destination, before-rename hook)
        self._tmpdirs: list[str] = []

    def __enter__(self) -> "StagedOutputs":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()

    def _tmpdir(self, path: str) -> tuple[str, str, str]:
        """(directory, file name, a fresh temporary directory beside `path`)."""
        directory, name = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
        if not name or not os.path.isdir(directory):
            raise OnnxPruneError(f"cannot write {path}: the directory {directory} does not exist; create it first")
        if os.path.isdir(path):
            raise OnnxPruneError(f"cannot write {path}: it is a directory; name a file, e.g. {os.path.join(path, name or 'out')}")
        try:
            tmpdir = tempfile.mkdtemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
        except OSError as err:
            raise OnnxPruneError(
                f"cannot write {path} ({first_line(err)}): choose a folder you can write to"
            ) from err
        self._tmpdirs.append(tmpdir)
        return directory, name, tmpdir

    def add(self, path: str | os.PathLike, write) -> None:
        """Stage one file: `write(temporary_path)` writes it."""
        path = os.fspath(path)
        _, name, tmpdir = self._tmpdir(path)
        staged = os.path.join(tmpdir, name)
        _staging(path, lambda: write(staged))
        self._moves.append((staged, path, None))

    def json(self, path: str | os.PathLike, data) -> None:
        def write(tmp: str) -> None:
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1, sort_keys=False)
                f.write("\n")

        self.add(path, write)

    def model(
        self, model: ir.Model, path: str | os.PathLike, *, external_data: bool | None = None,
        external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
    ) -> None:
        """Stage `model` at `path`: the .onnx and, with external data, `<name>.data` next
        to it. `external_data` None means: external when the initializers total more
        than `external_data_threshold` bytes. Saving over the file a model was loaded
        from is safe: tensors of `model` that live in the data file being replaced are
        re-pointed (just before the rename) at a memory map of the old file, so `model`
        stays usable and nothing is read into RAM. Does not validate the model."""
        path = os.fspath(path)
        total = initializer_bytes(model)
        use_external = external_data if external_data is not None else total > external_data_threshold
        if not use_external and total > EXTERNAL_DATA_THRESHOLD:
            raise OnnxPruneError(
                f"cannot save {path} without external data: its weights ({total / 2**30:.2f} GiB) exceed protobuf's "
                "2 GB limit; save with external_data=True"
            )
        directory, name, tmpdir = self._tmpdir(path)
        tmp_model, data_name = os.path.join(tmpdir, name), name + ".data"
        if use_external:
            _staging(path, lambda: ir.save(model, tmp_model, external_data=data_name,
                                           size_threshold_bytes=_INLINE_TENSOR_BYTES))
        else:
            _staging(path, lambda: onnx.save(to_proto(model), tmp_model))
        tmp_data, final_data = os.path.join(tmpdir, data_name), os.path.join(directory, data_name)
        if os.path.exists(tmp_data):
            self._moves.append((tmp_data, final_data, lambda: _detach_from_file(model, final_data)))
        # Weights read lazily live in the .onnx file itself: detach them from it too.
        self._moves.append((tmp_model, path, lambda: _detach_from_file(model, path)))

    def commit(self) -> None:
        for _, destination, _ in self._moves:
            if os.path.isdir(destination):
                raise OnnxPruneError(f"cannot write {destination}: it is a directory; name a file")
        for staged, destination, before in self._moves:
            if before is not None:
                before()
            try:
                os.replace(staged, destination)
            except OSError as err:
                raise OnnxPruneError(f"could not write {destination} ({first_line(err)}): check permissions") from err
        self._moves = []
        self.discard()

    def discard(self) -> None:
        for tmpdir in self._tmpdirs:
            shutil.rmtree(tmpdir, ignore_errors=True)
        self._tmpdirs, self._moves = [], []


def _staging(path: str, write) -> None:
    try:
        write()
    except OnnxPruneError:
        raise
    except Exception as err:
        raise OnnxPruneError(f"could not save {path} ({first_line(err)}): check free disk space and permissions") from err


def write_json_atomic(path: str | os.PathLike, data) -> None:
    """Write JSON through a temporary file and rename, so no half-written file remains."""
    with StagedOutputs() as out:
        out.json(path, data)
        out.commit()


def _detach_from_file(model: ir.Model, data_path: str) -> None:
    """Re-point initializers backed by `data_path` (an external-data file, or a model
    read lazily) at an mmap of its current contents.

    Why: after `os.replace` the path names the new file, whose offsets differ, so the old
    ExternalTensors would silently read wrong bytes. An open mmap keeps the old inode
    alive (POSIX), and mapping reads nothing into RAM until a page is touched.
    """
    if not os.path.exists(data_path):
        return
    for graph in model.graphs():
        for value in graph.initializers.values():
            tensor = value.const_value
            if not isinstance(tensor, ir.ExternalTensor) or not os.path.exists(tensor.path):
                continue
            if os.path.samefile(tensor.path, data_path):
                value.const_value = ir.Tensor(tensor.numpy(), dtype=tensor.dtype, name=tensor.name)


def release_mapped(model: ir.Model) -> None:
    """Unmap the weights of `model` that live in files (they map again when used): the
    pages a scan or a save touched stop counting against the process's memory."""
    for graph in model.graphs():
        for value in graph.initializers.values():
            if isinstance(value.const_value, ir.ExternalTensor):
                try:
                    value.const_value.release()
                except BufferError:  # an array of it is still in use: leave it mapped
                    pass


def prefers_file(model: ir.Model) -> bool:
    """Whether `model` should reach ONNX APIs as a saved file rather than as bytes.

    True when its weights exceed `FILE_HANDOFF_BYTES`, or when any live in external
    files: inlining those would copy every weight into RAM, while saving copies file to
    file.
    """
    return initializer_bytes(model) > FILE_HANDOFF_BYTES or any(
        isinstance(v.const_value, ir.ExternalTensor) for g in model.graphs() for v in g.initializers.values()
    )


def to_proto(model: ir.Model) -> onnx.ModelProto:
    """Serialise `model` to one self-contained ModelProto (external tensors read inline).

    For handing a model to APIs that take bytes (ONNX Runtime, the checker). Raises
    OnnxPruneError when the weights exceed the 2 GB protobuf limit. Leaves `model` as is.
    """
    total = initializer_bytes(model)
    if total > EXTERNAL_DATA_THRESHOLD:
        raise OnnxPruneError(
            f"model weights ({total / 2**30:.2f} GiB) exceed protobuf's 2 GB limit: save it with external data instead"
        )
    proto = ir.serde.serialize_model(model)
    external = {
        v.name: v.const_value
        for g in model.graphs()
        for v in g.initializers.values()
        if isinstance(v.const_value, ir.ExternalTensor)
    }
    if external:
        for graph_proto in _graph_protos(proto.graph):
            for tensor_proto in graph_proto.initializer:
                if tensor_proto.data_location == onnx.TensorProto.EXTERNAL and tensor_proto.name in external:
                    tensor_proto.raw_data = external[tensor_proto.name].tobytes()
                    del tensor_proto.external_data[:]
                    tensor_proto.data_location = onnx.TensorProto.DEFAULT
    return proto


def _graph_protos(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graph_protos(attr.g)
            for sub in attr.graphs:
                yield from _graph_protos(sub)


# --------------------------------------------------------------------------- shapes and data


def parse_input_shape(spec: str) -> tuple[str, tuple[int, ...]]:
    """Parse the CLI form `name=1,3,224,224` into `("name", (1, 3, 224, 224))`.

    Every dim must be a positive integer. Does not check the name against a model.
    """
    name, sep, dims_text = spec.rpartition("=")
    name = name.strip()
    if not sep or not name or not dims_text.strip():
        raise OnnxPruneError(f"bad --input-shape '{spec}': expected NAME=D1,D2,... e.g. input=1,3,224,224")
    dims = []
    for text in dims_text.split(","):
        try:
            dim = int(text.strip())
        except ValueError:
            raise OnnxPruneError(
                f"bad --input-shape '{spec}': '{text.strip()}' is not an integer; "
                f"give every dim as a number, e.g. {name}=1,3,224,224"
            ) from None
        if dim <= 0:
            raise OnnxPruneError(f"bad --input-shape '{spec}': dims must be positive, got {dim}")
        dims.append(dim)
    return name, tuple(dims)


def resolve_input_shapes(
    model: ir.Model, overrides: Mapping[str, tuple[int, ...]] | None = None
) -> dict[str, tuple[int, ...]]:
    """A concrete shape for every graph input (initializers excluded).

    Static dims come from the model, symbolic or unknown dims from `overrides`; without
    an override the first axis (batch) defaults to 1 and any other dynamic dim is an
    error that names the input, the axis and its dim_param. An override must have the
    input's rank and agree with its static dims. Does not look at what the model computes.
    """
    inputs = graph_inputs(model)
    overrides = dict(overrides or {})
    names = [v.name for v in inputs]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise OnnxPruneError(
            f"--input-shape names unknown input(s) {', '.join(unknown)}: the model's inputs are {', '.join(names)}"
        )
    return {v.name: _concrete_shape(v, overrides.get(v.name)) for v in inputs}


def declared_input_shapes(model: ir.Model, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """`shapes` with every input's statically declared dims taken from `model`: the
    concrete input shapes for a pruned model whose resizable inputs (a KV cache) shrank,
    keeping the sizes chosen for its symbolic dims."""
    out = dict(shapes)
    for value in graph_inputs(model):
        if value.name in out and value.shape is not None:
            out[value.name] = tuple(d if isinstance(d, int) else s for d, s in zip(value.shape, out[value.name]))
    return out


def _concrete_shape(value: ir.Value, override: tuple[int, ...] | None) -> tuple[int, ...]:
    declared = value.shape
    if override is not None:
        override = tuple(int(d) for d in override)
        if any(d <= 0 for d in override):
            raise OnnxPruneError(f"--input-shape for '{value.name}' has a non-positive dim: {override}")
        if declared is None:
            return override
        if len(declared) != len(override):
            raise OnnxPruneError(
                f"--input-shape for '{value.name}' has rank {len(override)} but the model declares rank "
                f"{len(declared)} ({_shape_text(declared)}): give {len(declared)} dims"
            )
        for axis, (dim, want) in enumerate(zip(declared, override)):
            if isinstance(dim, int) and dim != want:
                raise OnnxPruneError(
                    f"--input-shape for '{value.name}' sets axis {axis} to {want} but the model fixes it at {dim}: "
                    f"use {_suggestion(value)}"
                )
        return override
    if declared is None:
        raise OnnxPruneError(
            f"input '{value.name}' has no declared shape: pass --input-shape {value.name}=D1,D2,..."
        )
    dims = []
    for axis, dim in enumerate(declared):
        if isinstance(dim, int):
            dims.append(dim)
        elif axis == 0:
            dims.append(1)  # batch: any size is valid for pruning, 1 is cheapest
        else:
            label = f"dim_param '{dim.value}'" if dim.value else "an unnamed dynamic dim"
            raise OnnxPruneError(
                f"input '{value.name}' axis {axis} is {label} with no value: pass {_suggestion(value)}"
            )
    return tuple(dims)


def _shape_text(shape: ir.Shape) -> str:
    return "[" + ",".join(str(d) if isinstance(d, int) else (d.value or "?") for d in shape) + "]"


def _suggestion(value: ir.Value) -> str:
    dims = [
        str(d) if isinstance(d, int) else ("1" if axis == 0 else f"<{d.value or '?'}>")
        for axis, d in enumerate(value.shape or ())
    ]
    return f"--input-shape {value.name}={','.join(dims)}"


def make_sample_inputs(
    model: ir.Model, shapes: Mapping[str, tuple[int, ...]], *, seed: int = 0, batch: int | None = None
) -> dict[str, np.ndarray]:
    """Deterministic random feeds for every graph input.

    Floats ~ N(0, 1) in the input's own dtype, integers uniform in [0, 10) (safe as token
    ids or indices into any embedding), bools fair coin flips. Each input's stream
    depends only on `seed` and its name, not on input order. `batch` replaces axis 0.
    Does not produce realistic data: use calibration data for scoring.
    """
    feeds = {}
    for value in graph_inputs(model):
        if value.name not in shapes:
            raise OnnxPruneError(f"no shape for input '{value.name}': pass --input-shape {value.name}=...")
        shape = tuple(shapes[value.name])
        if batch is not None and shape:
            shape = (batch, *shape[1:])
        dtype = value.dtype if value.dtype is not None else ir.DataType.FLOAT
        rng = np.random.default_rng([seed, zlib.crc32(value.name.encode())])
        feeds[value.name] = _random_array(rng, shape, dtype, value.name)
    return feeds


def _random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype: ir.DataType, name: str) -> np.ndarray:
    if dtype == ir.DataType.BOOL:
        return rng.random(shape) < 0.5
    if dtype == ir.DataType.STRING:
        raise OnnxPruneError(f"input '{name}' is a string tensor: onnxprune cannot make sample data for it")
    np_dtype = dtype.numpy()
    if dtype.is_floating_point():
        return rng.standard_normal(shape, dtype=np.float32).astype(np_dtype)
    return rng.integers(0, 10, size=shape).astype(np_dtype)
