"""Units and dimension variables: the two union-finds behind channel-group analysis.

A *unit* is one removable index of some tensor axis before coupling. Units are born
only where a constant weight creates features (a Conv's output channel is row i of its
weight), so anything that is not fed by a weight can never be pruned on its own.
Coupling unions units: a residual Add unions channel i of both operands, a grouped
conv unions all channels of one group. After analysis each union-find class of units
is one prunable index ("class") of a channel group.

A *dimension variable* stands for one axis of one tensor. Axes that must have the
same size and the same index order (elementwise operands, a Conv input and its
weight's input axis) share a variable. A variable's owner is:

- ``None`` (pending): nothing forced it yet (an axis of a constant not yet tied);
- ``FIXED``: a runtime axis that is not prunable (batch, spatial, graph input);
- an int64 array, one entry per position: the unit at that position, or -1 where the
  position is fixed (e.g. the part of a Concat that comes from a graph input).

Tying an owned axis with a fixed one freezes the owned units, with the reason.
"""

from __future__ import annotations

import numpy as np

FIXED = "fixed"  # sentinel owner: a runtime axis that cannot be pruned

MAX_REASONS = 6  # per class, enough to explain; more only bloats reports


class UnitTable:
    """Union-find over units, with frozen reasons, inexact notes and source labels."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.source: list[int] = []  # unit -> source index, -1 if not born at a weight
        self.sources: list[dict] = []  # source index -> description
        self.frozen: dict[int, list[str]] = {}  # root -> reasons
        self.inexact: dict[int, list[str]] = {}  # root -> why removal is not exact
        self.tags: dict[int, set[str]] = {}  # root -> what kind of unit (e.g. "head")

    def new(self, n: int, source: dict | None = None) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        sid = -1
        if source is not None:
            sid = len(self.sources)
            self.sources.append({**source, "start": start, "size": n})
        self.source.extend([sid] * n)
        return np.arange(start, start + n, dtype=np.int64)

    def find(self, u: int) -> int:
        parent = self.parent
        root = u
        while parent[root] != root:
            root = parent[root]
        while parent[u] != root:  # path compression keeps later finds O(1)
            parent[u], u = root, parent[u]
        return root

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if ra > rb:  # keep the older unit as root: deterministic, and sources stay first
            ra, rb = rb, ra
        self.parent[rb] = ra
        if rb in self.tags:
            self.tags.setdefault(ra, set()).update(self.tags.pop(rb))
        for notes in (self.frozen, self.inexact):
            if rb in notes:
                merged = notes.setdefault(ra, [])
                for reason in notes.pop(rb):
                    if reason not in merged and len(merged) < MAX_REASONS:
                        merged.append(reason)
        return ra

    def _note(self, notes: dict[int, list[str]], units, reason: str) -> None:
        for u in np.unique(np.asarray(units, dtype=np.int64)):
            if u < 0:
                continue
            lst = notes.setdefault(self.find(int(u)), [])
            if reason not in lst and len(lst) < MAX_REASONS:
                lst.append(reason)

    def freeze(self, units, reason: str) -> None:
        self._note(self.frozen, units, reason)

    def mark_inexact(self, units, reason: str) -> None:
        self._note(self.inexact, units, reason)

    def tag(self, units, tag: str) -> None:
        for u in np.unique(np.asarray(units, dtype=np.int64)):
            if u >= 0:
                self.tags.setdefault(self.find(int(u)), set()).add(tag)

    def roots(self, units: np.ndarray) -> np.ndarray:
        """Class (root unit) of each entry; -1 stays -1."""
        out = np.full(len(units), -1, dtype=np.int64)
        for i, u in enumerate(units.tolist()):
            if u >= 0:
                out[i] = self.find(u)
        return out


class DimTable:
    """Union-find over dimension variables; the root holds the owner."""

    def __init__(self, units: UnitTable) -> None:
        self.units = units
        self.parent: list[int] = []
        self.owner: list = []  # None | FIXED | np.ndarray, valid at roots
        self.size: list[int | None] = []

    def new(self, size: int | None, owner=None) -> int:
        self.parent.append(len(self.parent))
        if owner is None and size is None:
            owner = FIXED  # an axis of unknown size can only be left alone
        self.owner.append(owner)
        self.size.append(size)
        return len(self.parent) - 1

    def fixed(self, size: int | None) -> int:
        return self.new(size, FIXED)

    def find(self, v: int) -> int:
        parent = self.parent
        root = v
        while parent[root] != root:
            root = parent[root]
        while parent[v] != root:
            parent[v], v = root, parent[v]
        return root

    def get(self, v: int):
        return self.owner[self.find(v)]

    def get_size(self, v: int) -> int | None:
        return self.size[self.find(v)]

    def array(self, v: int, why: str = "") -> np.ndarray | None:
        """The owner as an array, creating plain (sourceless) units for a pending axis.

        Index arithmetic (Concat, Slice, Flatten) needs concrete positions. Units
        created here belong to no weight, so they become prunable only if coupling
        later unions them with units that do.
        """
        r = self.find(v)
        own = self.owner[r]
        if own is FIXED:
            size = self.size[r]
            return None if size is None else np.full(size, -1, dtype=np.int64)
        if own is None:
            if self.size[r] is None:
                return None
            own = self.units.new(self.size[r])
            self.owner[r] = own
        return own

    def set_owner(self, v: int, owner) -> None:
        self.owner[self.find(v)] = owner

    def make_source(self, v: int, source: dict) -> None:
        """Give a pending axis fresh units born at a weight (the producer of features)."""
        r = self.find(v)
        if self.owner[r] is None and self.size[r] is not None:
            self.owner[r] = self.units.new(self.size[r], source)

    def tie(self, a: int, b: int, why: str) -> int:
        """Require two axes to be pruned identically; returns the merged variable."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        oa, ob = self.owner[ra], self.owner[rb]
        sa, sb = self.size[ra], self.size[rb]
        if sa is not None and sb is not None and sa != sb:
            # Sizes disagree (a broadcast the caller did not filter): never couple.
            for own in (oa, ob):
                if isinstance(own, np.ndarray):
                    self.units.freeze(own, f"{why}: axis sizes {sa} and {sb} differ")
            return ra
        if ra > rb:
            ra, rb, oa, ob = rb, ra, ob, oa
        self.parent[rb] = ra
        if self.size[ra] is None:
            self.size[ra] = self.size[rb]
        if oa is None:
            self.owner[ra] = ob
        elif ob is None:
            pass
        elif oa is FIXED or ob is FIXED:
            other = ob if oa is FIXED else oa
            if isinstance(other, np.ndarray):
                self.units.freeze(other, why)
            self.owner[ra] = FIXED
        else:
            self._union_positions(oa, ob, why)
        return ra

    def _union_positions(self, oa: np.ndarray, ob: np.ndarray, why: str) -> None:
        fixed_a, fixed_b = oa < 0, ob < 0
        if fixed_a.any() or fixed_b.any():
            self.units.freeze(ob[fixed_a & ~fixed_b], why)
            self.units.freeze(oa[fixed_b & ~fixed_a], why)
        both = ~fixed_a & ~fixed_b
        if not both.any():
            return
        pairs = np.unique(np.stack([oa[both], ob[both]], axis=1), axis=0)
        union = self.units.union
        for a, b in pairs.tolist():
            if a != b:
                union(a, b)
        # Fixed positions on either side make the merged position fixed.
        oa[fixed_b] = -1
