"""Apply a `PruningPlan` to the source framework's parameters: a PyTorch `state_dict`.

`apply_plan(state_dict, plan, model)` slices every parameter the plan's removal touches,
as the ONNX rewrite slices the initializers, so the framework model can be rebuilt at
the pruned widths (and fine-tuned, or exported again).

How ONNX constants are matched to `state_dict` keys, in order:
1. by name: an initializer called like a key (`layer1.0.conv1.weight`) is that key;
2. by the consuming node's module path: TorchScript names nodes after their module
   scopes (`/layer1/layer1.0/conv1/Conv`), so a Conv/Gemm/MatMul weight (input 1) is
   `<path>.weight` and its bias (input 2) `<path>.bias` — this covers initializers the
   exporter renamed when it folded BatchNorm into the conv (`onnx::Conv_537`);
3. a folded BatchNorm: the BatchNorm module registered right after a conv in the
   `state_dict` (weight, bias, running_mean, running_var with one entry per output
   channel) loses the conv's removed output channels.
ONNX and PyTorch lay out Conv, ConvTranspose, BatchNorm, LayerNorm and Linear-as-Gemm
(transB=1) weights alike, so axes carry over; a Linear exported as MatMul of a
transposed initializer (`onnx::MatMul_N`) is reported unmapped.

Dropped residual blocks cannot be expressed as sliced tensors: their modules are listed
(`report["dropped_modules"]`) for the caller to replace by identity in code, and left
in the returned dict unless `drop_blocks=True`.

What this does not do: edit model code, handle shared or tied parameters specially
(a parameter read by several layers is sliced only if all readers agree), or map
parameters of exporters that do not keep module scopes in node names (dynamo exports
match by name only).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from onnxprune.compiler.plan import PruningPlan
from onnxprune.compiler.workspace import analyze, working_copy
from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import load_model
from onnxprune.passes.rules import record
from onnxprune.passes.slice_channels import const_slicings

_BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def module_path(node_name: str) -> str | None:
    """`/layer1/layer1.0/conv1/Conv` -> `layer1.0.conv1`, `/layer3/layer3.0/shortcut/shortcut.0/Conv`
    -> `layer3.0.shortcut.0` (TorchScript scope names)."""
    if not node_name.startswith("/"):
        return None
    scopes = [s for s in node_name.split("/") if s][:-1]
    parts: list[str] = []
    for scope in scopes:
        # A Sequential's child is named with the Sequential's own name ("layer1.0" under
        # "layer1", "shortcut.0" under "shortcut"): it replaces that component.
        if parts and scope.startswith(parts[-1] + "."):
            parts[-1] = scope
        else:
            parts.append(scope)
    return ".".join(parts) or None


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

    def mapped_key(value, uses) -> str | None:
        if value.name in state_dict:
            return value.name
        for ni, ii in uses:
            node = an.nodes[ni]
            path = module_path(node.name)
            slot = _weight_slot(node, ii)
            if path and slot is not None:
                key = f"{path}.{'bias' if slot.in_axis is None else 'weight'}"
                if key in state_dict:
                    return key
        return None

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
        key = mapped_key(value, uses)
        if key is None:
            # A bias folded in from a BatchNorm: the conv's weight carries the mapping.
            if any(_is_bias(an.nodes[ni], ii) for ni, ii in uses):
                continue
            unmapped.append(value.name)
            continue
        tensor = state_dict[key]
        if tuple(tensor.shape) != tuple(an.shape_of(value)):
            unmapped.append(f"{value.name} -> {key} (shape {tuple(tensor.shape)} is not {tuple(an.shape_of(value))})")
            continue
        out[key] = _take(tensor, masks)
        sliced[key] = {"from": value.name, "axes": {a: int((~m).sum()) for a, m in masks.items()}}
        if key.endswith(".weight") and 0 in masks and any(_outputs_on_axis_0(an.nodes[ni], ii) for ni, ii in uses):
            bn = _following_bn(keys, key, len(masks[0]), state_dict)
            if bn is not None:
                for name in _BN_KEYS:
                    full = f"{bn}.{name}"
                    if full in state_dict and full not in sliced:
                        out[full] = _take(state_dict[full], {0: masks[0]})
                        sliced[full] = {"from": f"BatchNorm after {key}", "axes": {0: int((~masks[0]).sum())}}
    dropped = []
    for block in plan.blocks:
        paths = {module_path(n) for n in block.get("branch", [])} - {None}
        dropped.extend(sorted(p for p in paths if any(k.startswith(p + ".") for k in keys)))
    if drop_blocks:
        for prefix in dropped:
            for k in [k for k in out if k.startswith(prefix + ".")]:
                del out[k]
    if plan.channels and not sliced:
        raise OnnxPruneError(
            "no state_dict key matches the model's pruned initializers: export with module scopes in node "
            "names (TorchScript) or keep parameter names as initializer names"
        )
    return out, {"sliced": sliced, "unmapped": unmapped, "dropped_modules": dropped}
