"""Apply a `PruningPlan` to the source framework's parameters: a PyTorch `state_dict`.

`apply_plan(state_dict, plan, model)` slices every parameter the plan's removal touches,
as the ONNX rewrite slices the initializers, so the framework model can be rebuilt at
the pruned widths (and fine-tuned, or exported again).

How ONNX constants are matched to `state_dict` keys, in order:
1. by name: an initializer called like a key (`layer1.0.conv1.weight`) is that key;
2. by the consuming node's module path, where the name does not match: a Conv, Gemm or
   MatMul weight (input 1) is `<path>.weight` and its bias (input 2) `<path>.bias`,
   accepted only if `<path>.weight` has the node's weight shape (in PyTorch's layout).
   The path comes from the node's scope: TorchScript names nodes after their module
   scopes (`/layer1/layer1.0/conv1/Conv` -> `layer1.0.conv1`); the dynamo exporter
   (`torch.onnx.export(..., dynamo=True)`) names nodes `node_MatMul_3` and keeps the
   scope in node metadata (`pkg.torch.onnx.name_scopes`, `['', 'blocks', 'blocks.0',
   'blocks.0.fc1', 'linear_1']` -> `blocks.0.fc1`; else `namespace`). This covers
   initializers the exporter renamed: TorchScript's BatchNorm folded into a conv
   (`onnx::Conv_537`) and the weights of a Linear on 3-D input (transformers), which
   both exporters write as MatMul of a pre-transposed constant (TorchScript
   `onnx::MatMul_N`, dynamo `val_N`);
3. a folded BatchNorm: the BatchNorm module registered right after a conv in the
   `state_dict` (weight, bias, running_mean, running_var with one entry per output
   channel) loses the conv's removed output channels. (The dynamo exporter's fusion keeps
   the conv's parameter names, so its conv matches by name and its BatchNorm this way.)
ONNX and PyTorch lay out Conv, ConvTranspose, BatchNorm, LayerNorm and Linear-as-Gemm
(transB=1) weights alike, so axes carry over. A 2-D weight ONNX reads as `[in, out]`
(MatMul, Gemm with transB=0) is a Linear's `[out, in]` weight transposed: matched by
module path, it is sliced with the axes swapped (`report["sliced"][key]["transposed"]`).
Its shape alone cannot tell (a square weight fits either way): the op's layout decides.
A Linear read through a `Transpose` node of its named initializer (TorchScript with
`do_constant_folding=False`, dynamo with `optimize=False`) is folded by the analysis into
a transposed constant named after the Transpose's output
(passes/fold_weight_transposes.py), which then maps like the pre-transposed ones.

Dropped residual blocks cannot be expressed as sliced tensors: their modules (the
innermost module holding every node of the block's branch, from the same scopes) are
listed (`report["dropped_modules"]`) for the caller to replace by identity in code, and
left in the returned dict unless `drop_blocks=True`.

What this does not do: edit model code, handle shared or tied parameters specially
(a parameter read by several layers is sliced only if all readers agree), or map
renamed constants of exporters that keep module scopes neither in node names nor in
node metadata (those match by name only).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

import numpy as np

from onnxprune.compiler.plan import PruningPlan
from onnxprune.compiler.workspace import analyze, working_copy
from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import load_model
from onnxprune.passes.rules import record
from onnxprune.passes.slice_channels import const_slicings

_BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def _torchscript_scopes(node_name: str) -> list[str]:
    """`/layer1/layer1.0/conv1/Conv` -> `['layer1', 'layer1.0', 'layer1.0.conv1']`."""
    if not node_name.startswith("/"):
        return []
    parts: list[str] = []
    paths: list[str] = []
    for scope in [s for s in node_name.split("/") if s][:-1]:
        # A Sequential's child is named with the Sequential's own name ("layer1.0" under
        # "layer1", "shortcut.0" under "shortcut"): it replaces that component.
        if parts and scope.startswith(parts[-1] + "."):
            parts[-1] = scope
        else:
            parts.append(scope)
        paths.append(".".join(parts))
    return paths


def module_path(node_name: str) -> str | None:
    """`/layer1/layer1.0/conv1/Conv` -> `layer1.0.conv1`, `/layer3/layer3.0/shortcut/shortcut.0/Conv`
    -> `layer3.0.shortcut.0` (TorchScript scope names)."""
    paths = _torchscript_scopes(node_name)
    return paths[-1] if paths else None


def node_scopes(node) -> list[str]:
    """The module paths enclosing `node`, outermost first: from the dynamo exporter's
    metadata (`pkg.torch.onnx.name_scopes`, else `namespace`), else from a TorchScript
    node name. The last entry of the metadata is the op itself (`linear_1`), not a module."""
    meta = node.metadata_props
    scopes = meta.get("pkg.torch.onnx.name_scopes")
    if scopes:
        try:
            names = ast.literal_eval(scopes)
        except (ValueError, SyntaxError):
            names = None
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            return [n for n in names[:-1] if n]
    namespace = meta.get("namespace")
    if namespace:
        # ": zoo.Net/blocks: Sequential/blocks.0: Block/blocks.0.fc1: Linear/linear_1: aten.linear.default"
        names = [part.split(": ")[0] for part in namespace.split("/")]
        return [n for n in names[:-1] if n]
    return _torchscript_scopes(node.name or "")


def _innermost_common(scope_lists: list[list[str]]) -> str | None:
    common: list[str] = []
    for level in zip(*scope_lists):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return common[-1] if common else None


def _following_bn(keys: list[str], after: str, size: int, state_dict) -> str | None:
    """The BatchNorm module registered right after key `after` with `size` channels."""
    start = keys.index(after) + 1
    for key in keys[start:start + 8]:
        if key.endswith(".running_mean"):
            prefix = key[: -len(".running_mean")]
            if tuple(state_dict[key].shape) == (size,):
                return prefix
            return None
    return None


def _weight_slot(node, index: int):
    """The op record's weight layout for input `index` of `node` (None: not a weight)."""
    rec = record(node)
    return None if rec is None or rec.weights is None else rec.weights(node).get(index)


def _is_bias(node, index: int) -> bool:
    slot = _weight_slot(node, index)
    return slot is not None and slot.in_axis is None


def _linear_transposed(slot, rank: int) -> bool:
    """A 2-D weight read as `[in, out]` (MatMul, Gemm transB=0): a PyTorch Linear keeps it
    as `[out, in]`, so the state_dict tensor is its transpose."""
    return (rank == 2 and slot is not None and slot.in_axis is not None
            and (slot.in_axis % 2, slot.out_axis % 2) == (0, 1))


def _owner(an, node, state_dict) -> tuple[str, bool] | None:
    """The module `node` belongs to (its innermost scope), and whether its weight is the
    transpose of the module's. A node with a weight (Conv, Gemm, MatMul: input 1) belongs
    to the module only if `<path>.weight` has that weight's shape in PyTorch's layout:
    that rejects a scope naming another module (the dynamo exporter gives a conv with a
    BatchNorm fused into it the BatchNorm's scope)."""
    scopes = node_scopes(node)
    if not scopes:
        return None
    path = scopes[-1]
    wslot = _weight_slot(node, 1)
    if wslot is None or wslot.in_axis is None:
        return path, False
    shape = tuple(an.shape_of(node.inputs[1]))
    transposed = _linear_transposed(wslot, len(shape))
    wkey = f"{path}.weight"
    if wkey not in state_dict or tuple(state_dict[wkey].shape) != (shape[::-1] if transposed else shape):
        return None
    return path, transposed


def _outputs_on_axis_0(node, index: int) -> bool:
    """A weight whose axis 0 holds its output features: a BatchNorm the exporter folded
    into it follows its axis-0 slicing (Conv, and Gemm with transB=1)."""
    slot = _weight_slot(node, index)
    return slot is not None and slot.in_axis is not None and slot.out_axis == 0


def _take(tensor, keep_by_axis: dict[int, np.ndarray]):
    """Slice a torch tensor or numpy array with boolean masks per axis."""
    out = tensor
    for axis, mask in keep_by_axis.items():
        index = np.flatnonzero(mask)
        if hasattr(out, "index_select"):  # torch
            import torch

            out = out.index_select(axis, torch.as_tensor(index, dtype=torch.long))
        else:
            out = np.take(out, index, axis=axis)
    return out.contiguous() if hasattr(out, "contiguous") else np.ascontiguousarray(out)


def _mapped_key(an, state_dict, value, uses) -> tuple[str, bool] | None:
    """The state_dict key of constant `value`, and whether it is the key's transpose."""
    if value.name in state_dict:
        return value.name, False
    for ni, ii in uses:
        node = an.nodes[ni]
        slot = _weight_slot(node, ii)
        owner = _owner(an, node, state_dict)
        if slot is None or owner is None:
            continue
        path, transposed = owner
        key = f"{path}.{'bias' if slot.in_axis is None else 'weight'}"
        if key in state_dict:
            return key, transposed and slot.in_axis is not None
    return None


def _twins(an, state_dict, key: str, uses, shape: tuple) -> list[str]:
    """Other keys sharing `key`'s constant. Exporters write one constant for parameters
    with identical values (two LayerNorms at their initial ones): the other readers'
    modules lose the same entries. TorchScript reads it through an Identity named like
    the other key; dynamo reads it directly, from nodes in the other module's scope. Not
    for a transposed key (the caller's check): a Linear's pre-transposed copy is its own."""
    module, _, attr = key.rpartition(".")
    twins = []
    for ni, _ in uses:
        node = an.nodes[ni]
        if node.op_type == "Identity" and node.outputs[0].name in state_dict:
            twin = node.outputs[0].name
        else:
            owner = _owner(an, node, state_dict)
            twin = f"{owner[0]}.{attr}" if owner is not None and owner[0] != module else None
        if twin is not None and twin in state_dict and tuple(state_dict[twin].shape) == shape and twin not in twins:
            twins.append(twin)
    return twins


def _dropped_modules(an, plan: PruningPlan, keys: list[str]) -> list[str]:
    """Per dropped block, the innermost module holding every node of its branch."""
    dropped: list[str] = []
    by_name = {n.name: n for n in an.nodes}
    for block in plan.blocks:
        branch = [by_name[n] for n in block.get("branch", []) if n in by_name]
        path = _innermost_common([node_scopes(n) for n in branch]) if branch else None
        if path is not None and any(k.startswith(path + ".") for k in keys) and path not in dropped:
            dropped.append(path)
    return dropped


def apply_plan(state_dict: Mapping, plan: PruningPlan, model, *, input_shapes=None, drop_blocks: bool = False):
    """A new state_dict with the plan applied, and a report of what matched."""
    loaded = model if not isinstance(model, (str, bytes)) and hasattr(model, "graph") else load_model(model)
    work = working_copy(loaded)
    an, _, _ = analyze(work, input_shapes)
    removed = plan.to_removed(an) if plan.channels else set()
    keys = list(state_dict)
    out = dict(state_dict)
    sliced, unmapped = {}, []
    slicings = const_slicings(an, removed)

    for value, how in slicings.items():
        if how is None:
            continue
        if isinstance(how, dict):
            if len({tuple((a, r) for a, r, _ in k) for k in how.values()}) > 1:
                unmapped.append(f"{value.name} (readers sliced differently)")
                continue
            uses, key_tuple = list(how), next(iter(how.values()))
        else:
            uses = [k for k in an.const_dims if an.nodes[k[0]].inputs[k[1]] is value]
            key_tuple = how
        masks = {axis: mask for axis, _, mask in key_tuple}
        found = _mapped_key(an, state_dict, value, uses)
        if found is None:
            # A bias folded in from a BatchNorm: the conv's weight carries the mapping.
            if any(_is_bias(an.nodes[ni], ii) for ni, ii in uses):
                continue
            unmapped.append(value.name)
            continue
        key, transposed = found
        tensor = state_dict[key]
        shape = tuple(an.shape_of(value))
        if tuple(tensor.shape) != (shape[::-1] if transposed else shape):
            unmapped.append(f"{value.name} -> {key} (shape {tuple(tensor.shape)} is not {shape})")
            continue
        if transposed:
            # ONNX axis a of a 2-D [in, out] weight is PyTorch axis 1 - a.
            masks = {1 - (axis % 2): mask for axis, mask in masks.items()}
        out[key] = _take(tensor, masks)
        sliced[key] = {"from": value.name, "axes": {a: int((~m).sum()) for a, m in masks.items()}}
        if transposed:
            sliced[key]["transposed"] = True
        else:
            for twin in _twins(an, state_dict, key, uses, shape):
                if twin not in sliced:
                    out[twin] = _take(state_dict[twin], masks)
                    sliced[twin] = {"from": f"{value.name} (shared with {key})",
                                    "axes": {a: int((~m).sum()) for a, m in masks.items()}}
        if key.endswith(".weight") and 0 in masks and any(_outputs_on_axis_0(an.nodes[ni], ii) for ni, ii in uses):
            bn = _following_bn(keys, key, len(masks[0]), state_dict)
            if bn is not None:
                for name in _BN_KEYS:
                    full = f"{bn}.{name}"
                    if full in state_dict and full not in sliced:
                        out[full] = _take(state_dict[full], {0: masks[0]})
                        sliced[full] = {"from": f"BatchNorm after {key}", "axes": {0: int((~masks[0]).sum())}}
    dropped = _dropped_modules(an, plan, keys)
    if drop_blocks:
        for prefix in dropped:
            for k in [k for k in out if k.startswith(prefix + ".")]:
                del out[k]
    if plan.channels and not sliced:
        raise OnnxPruneError(
            "no state_dict key matches the model's pruned initializers: export with module scopes in node "
            "names (TorchScript) or node metadata (dynamo), or keep parameter names as initializer names"
        )
    return out, {"sliced": sliced, "unmapped": unmapped, "dropped_modules": dropped}
