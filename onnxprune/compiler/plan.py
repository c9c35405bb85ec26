"""`PruningPlan`: the contract between deciding and rewriting.

A plan names what goes by the *original initializer names* of the weights whose
output features make up each group (`conv1.weight` rows 3, 7, ...), and the residual
blocks that go by the *name of their Add node* (node names are unique: see
`passes/name_nodes.py`), so it can be written as JSON, edited by hand, applied later to
the same model (`--plan`: channels first, then blocks), or mapped onto the source
framework's parameters (initializer names survive export).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from onnxprune.compiler.selection import emptied_axes
from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import write_json_atomic
from onnxprune.passes.blocks import Block
from onnxprune.passes.channel_analysis import ChannelAnalysis

FORMAT = "onnxprune.plan/1"


@dataclass
class PruningPlan:
    channels: list[dict] = field(default_factory=list)  # per source weight: removed indices
    blocks: list[dict] = field(default_factory=list)  # dropped residual blocks, by their Add
    meta: dict = field(default_factory=dict)

    # -- from and to the analysis ---------------------------------------------------
    @classmethod
    def from_removed(cls, an: ChannelAnalysis, removed: set[int], **meta) -> "PruningPlan":
        entries = []
        for src in an.units.sources:
            start, size = src["start"], src["size"]
            idx = [i for i in range(size) if an.units.find(start + i) in removed]
            if idx:
                entries.append(
                    {
                        "tensor": src["tensor"],
                        "axis": src["axis"],
                        "node": src["node"],
                        "size": size,
                        "group": an.class_group.get(an.units.find(start + idx[0])),
                        "removed": idx,
                    }
                )
        return cls(channels=entries, meta=meta)

    def to_removed(self, an: ChannelAnalysis, *, strict: bool = True) -> set[int]:
        """The classes this plan removes in `an`; errors name what does not match.
        `strict=False` skips what does not match instead (to count what a search that
        changed the model itself removed, in the original's groups: a channel its
        parent could prune may be frozen in the original)."""
        by_key = {(s["tensor"], s["axis"], s["node"]): s for s in an.units.sources}
        removed: set[int] = set()
        for entry in self.channels:
            key = (entry["tensor"], entry["axis"], entry["node"])
            src = by_key.get(key)
            if src is None and not strict:
                continue
            if src is None:
                raise OnnxPruneError(
                    f"plan names weight {entry['tensor']!r} axis {entry['axis']} at node "
                    f"{entry['node']!r}, which this model has no prunable channels for: "
                    "apply the plan to the model it was made from"
                )
            for i in entry["removed"]:
                if not strict and (not 0 <= i < src["size"] or an.units.find(src["start"] + i) in an.units.frozen):
                    continue
                if not 0 <= i < src["size"]:
                    raise OnnxPruneError(
                        f"plan removes index {i} of {entry['tensor']!r}, which has {src['size']}"
                    )
                c = an.units.find(src["start"] + i)
                if c in an.units.frozen:
                    raise OnnxPruneError(
                        f"plan removes channel {i} of {entry['tensor']!r}, which is frozen: "
                        f"{an.units.frozen[c][0]}"
                    )
                removed.add(c)
        emptied = emptied_axes(an, removed) if strict else []
        if emptied:
            gid = an.class_group.get(int(an.classes_of(emptied[0])[0]))
            src = an.groups[gid].sources[0]["tensor"] if gid is not None else "?"
            raise OnnxPruneError(
                f"plan removes every channel of a tensor axis (group {gid}, weight {src!r}): "
                "keep at least one index of every group and of every Split/Slice piece"
            )
        return removed

    @staticmethod
    def block_entry(block: Block) -> dict:
        """How a plan lists a dropped block (`add` identifies it; the rest informs)."""
        return {
            "id": block.id, "add": block.add, "entry": block.entry, "exit": block.exit,
            "stage": block.stage, "branch": list(block.branch),
        }

    def to_dropped(self, blocks: list[Block]) -> list[int]:
        """Ids (in `blocks`, found on the model the plan is applied to) of the blocks this
        plan drops, matched by their Add's name; errors name what does not match."""
        by_add = {b.add: b for b in blocks}
        dropped = []
        for entry in self.blocks:
            block = by_add.get(entry.get("add"))
            if block is None:
                raise OnnxPruneError(
                    f"plan drops the block ending at Add {entry.get('add')!r}, which this model does not have: "
                    "apply the plan to the model it was made from"
                )
            if not block.removable:
                raise OnnxPruneError(f"plan drops block {block.add!r}, which cannot be removed: {block.reason}")
            dropped.append(block.id)
        return dropped

    # -- JSON ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "meta": self.meta, "channels": self.channels, "blocks": self.blocks}

    @classmethod
    def from_dict(cls, data, source: str = "the plan") -> "PruningPlan":
        """A plan from its JSON form, checked against the schema (one-line errors)."""
        _check_schema(data, source)
        return cls(channels=data.get("channels", []), blocks=data.get("blocks", []), meta=data.get("meta", {}))

    def save(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PruningPlan":
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise OnnxPruneError(f"cannot read plan {path}: {e}: pass a plan written by --save-plan") from None
        return cls.from_dict(data, f"plan {path}")


# What each plan entry holds: field -> (type check, what it is).
_CHANNEL_FIELDS = {
    "tensor": (lambda v: isinstance(v, str), "the name of the weight whose output features it removes"),
    "axis": (lambda v: _is_int(v), "that weight's feature axis, an integer"),
    "node": (lambda v: isinstance(v, str), "the name of the node the weight belongs to"),
    "removed": (lambda v: isinstance(v, list) and all(_is_int(i) for i in v), "a list of integer indices"),
}
# Optional: written by --save-plan for people, not needed to apply it.
_OPTIONAL = {"size": (lambda v: _is_int(v) and v > 0, "the axis' size, a positive integer")}
_BLOCK_FIELDS = {"add": (lambda v: isinstance(v, str), "the name of the block's residual Add node")}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_schema(data, source: str) -> None:
    fix = "write plans with --save-plan, or fix the entry by hand"
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise OnnxPruneError(f"{source} is not an onnxprune plan (a JSON object with \"format\": {FORMAT!r}): {fix}")
    if not isinstance(data.get("meta", {}), dict):
        raise OnnxPruneError(f"{source}: \"meta\" must be an object: {fix}")
    for key, fields in (("channels", _CHANNEL_FIELDS), ("blocks", _BLOCK_FIELDS)):
        entries = data.get(key, [])
        if not isinstance(entries, list):
            raise OnnxPruneError(f"{source}: \"{key}\" must be a list of objects, got {type(entries).__name__}: {fix}")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise OnnxPruneError(f"{source}: {key}[{i}] must be an object, got {type(entry).__name__}: {fix}")
            for name, (ok, what) in fields.items():
                if name not in entry:
                    raise OnnxPruneError(f"{source}: {key}[{i}] has no \"{name}\" ({what}): {fix}")
            for name, (ok, what) in {**fields, **_OPTIONAL}.items():
                if name in entry and not ok(entry[name]):
                    raise OnnxPruneError(f"{source}: {key}[{i}] \"{name}\" must be {what}, got {entry[name]!r}: {fix}")
