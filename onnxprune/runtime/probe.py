"""The probe model: one copy of a model that evaluates any set of pruning candidates in
one ONNX Runtime session, without a rewrite or a new session per candidate.

`ProbeModel(model, ...)` builds the copy (`passes/probe_graph.py`, `ProbeGraphPass`) with
- **taps**: extra graph outputs at the representation CKA compares (by default the
  input of the classifier, or the outputs: `default_taps`), or any values the caller names;
- **block gates**: per removable residual block, an input `onnxprune_gate_<id>` of shape
  [N, 1, ...] that multiplies the block's branch f before its Add: `Add(x, f(x)·g)`.
  Gate 0 computes `x`, exactly what `RemoveBlocksPass` leaves;
- **channel masks** (when given a channel analysis): one input `onnxprune_mask` of
  shape [N, T + 1] holding a 0/1 entry per prunable class of the masked groups (and a
  trailing constant 1 for positions that are not masked). Every consumer that contracts
  over a masked axis (a Conv, Gemm, MatMul or fused attention reading it through a
  weight's input axis) gets its input multiplied by the entries of its positions. For an
  exact group, mask 0 computes what physically removing those channels computes.

Candidates share one run by stacking along the batch: K candidates × B samples run as
one batch of K·B, each sample with its candidate's gates and masks. This needs axis 0 of
every gated value to be the batch (true for the CNNs and transformers exported by the
usual tools); `stack=1` runs one candidate per call otherwise.

What this does not do: mask a group whose consumer reads the channel axis as axis 0
(such groups are listed in `unmaskable`), or gate projection blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import load_model, to_proto
from onnxprune.passes.blocks import Block
from onnxprune.passes.probe_graph import (
    GATE_PREFIX,
    MASK_IDX_PREFIX,
    MASK_INPUT,
    MASK_MUL_PREFIX,
    ProbeGraph,
    ProbeGraphPass,
)
from onnxprune.runtime.prefix import Suffixes, prefix_features
from onnxprune.runtime.session import default_providers, ort_session, tapped_session


@dataclass(frozen=True)
class Candidate:
    """One candidate: the blocks it removes and, per group id, the classes it removes."""

    blocks: frozenset[int] = frozenset()
    channels: Mapping[int, frozenset[int]] = field(default_factory=dict)


class ProbeModel:
    """See the module docstring. `analysis` (a ChannelAnalysis of `model` as given, e.g.
    from `compiler.workspace.analyze` on the same file) enables channel masks for the
    groups in `groups` (default: every group with a prunable class)."""

    def __init__(
        self,
        model: ir.Model,
        *,
        taps: Sequence[str] | None = None,
        blocks: Iterable[Block] | None = None,
        analysis=None,
        groups: Iterable[int] | None = None,
        keep_outputs: bool = False,
        providers: list | None = None,
        threads: int = 0,
    ):
        # With an analysis, the probe is built from the very model it analysed (after its
        # shape folding), so node i of the copy is node i of the analysis.
        source = analysis.model if analysis is not None else model
        self.model = load_model(ir.serde.serialize_model(source))
        surgery = ProbeGraphPass(taps=taps, blocks=blocks, analysis=analysis, groups=groups, keep_outputs=keep_outputs)
        surgery(self.model)
        self._adopt(surgery.probe, providers, threads)

    def _adopt(self, built: ProbeGraph, providers: list | None, threads: int) -> None:
        """Take what the surgery recorded (`built`, for `self.model`) and open the session."""
        self._built = built
        self.taps, self.inputs, self.blocks = built.taps, built.inputs, built.blocks
        self.mask_index, self.unmaskable, self.mask_width = built.mask_index, built.unmaskable, built.mask_width
        self.output_names, self._gate_ranks, self._gate_dtypes = built.output_names, built.gate_ranks, built.gate_dtypes
        self.stackable = built.stackable  # "maybe" is settled by the first stacked run
        self.providers, self.threads = providers or default_providers(), threads
        self.session = ort_session(self.model, providers=self.providers, intra_op_num_threads=threads, optimize="all")
        self._suffixes: Suffixes | None = None  # runtime/prefix.py, built when first asked

    # -- moving to another process (runtime/distributed.py) -------------------------
    def state(self) -> dict:
        """What another process needs to run this probe: the probe graph (serialised)
        and what the surgery recorded; `from_state` rebuilds it without redoing either."""
        return {"model": to_proto(self.model).SerializeToString(), "built": replace(self._built, stackable=self.stackable)}

    @classmethod
    def from_state(cls, state: dict, *, providers: list | None = None, threads: int = 1) -> ProbeModel:
        probe = cls.__new__(cls)
        probe.model = ir.serde.deserialize_model(onnx.load_from_string(state["model"]))
        probe._adopt(state["built"], providers, threads)
        return probe

    # -- running ------------------------------------------------------------------
    def feeds_for(self, feeds: Mapping[str, np.ndarray], candidates: Sequence[Candidate]) -> dict[str, np.ndarray]:
        """The session's feeds for `candidates` stacked along the batch over `feeds`. One
        candidate gets gates and masks of one row, which broadcasts over any axis 0."""
        k = len(candidates)
        if k > 1 and self.stackable == "no":
            raise OnnxPruneError("this probe runs one candidate at a time (its batch axis cannot be stacked)")
        batch = len(next(iter(feeds.values()))) if k > 1 else 1
        out = {name: np.concatenate([feeds[name]] * k, axis=0) if k > 1 else feeds[name] for name in self.inputs}
        for bid in self.blocks:
            gate = np.ones(k * batch, dtype=np.float32)
            for i, cand in enumerate(candidates):
                if bid in cand.blocks:
                    gate[i * batch:(i + 1) * batch] = 0.0
            shape = (k * batch,) + (1,) * (self._gate_ranks[bid] - 1)
            out[f"{GATE_PREFIX}{bid}"] = gate.reshape(shape).astype(self._gate_dtypes[bid])  # float16 branches too
        if self.mask_width:
            mask = np.ones((k * batch, self.mask_width + 1), dtype=np.float32)
            for i, cand in enumerate(candidates):
                for gid, classes in cand.channels.items():
                    index = self.mask_index.get(gid)
                    if index is None:
                        raise OnnxPruneError(f"group {gid} is not masked in this probe ({self.unmaskable.get(gid, 'not asked for')})")
                    mask[i * batch:(i + 1) * batch, [index[c] for c in classes]] = 0.0
            out[MASK_INPUT] = mask
        return out

    def run(self, feeds: Mapping[str, np.ndarray], candidates: Sequence[Candidate]) -> list[dict[str, np.ndarray]]:
        """Tapped values (and kept outputs) per candidate, for one batch of `feeds`."""
        unknown = [b for c in candidates for b in c.blocks if b not in self.blocks]
        if unknown:
            raise OnnxPruneError(f"block {unknown[0]} is not gated in this probe (not removable, or not given)")
        names = self.taps + self.output_names[len(self.taps):]  # tapped values by their own names
        if self.stackable == "maybe" and len(candidates) > 1:
            self._try_stacking(feeds)
        if self.stackable == "no" or len(candidates) == 1:
            return [dict(zip(names, self.session.run(self.output_names, self.feeds_for(feeds, [c]))))
                    for c in candidates]
        batch = len(next(iter(feeds.values())))
        arrays = self.session.run(self.output_names, self.feeds_for(feeds, candidates))
        return [{name: a[i * batch:(i + 1) * batch] for name, a in zip(names, arrays)} for i in range(len(candidates))]

    def _try_stacking(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Settle "maybe": two different candidates stacked in one run must give what
        each gives alone (a value whose axis 0 is not the batch would mix them up)."""
        trial = [self._trial_candidate(), Candidate()]
        batch = len(next(iter(feeds.values())))
        try:
            stacked = self.session.run(self.output_names, self.feeds_for(feeds, trial))
            alone = [self.session.run(self.output_names, self.feeds_for(feeds, [c])) for c in trial]
            same = all(
                a.shape[:1] == (2 * batch,) and np.allclose(a[i * batch:(i + 1) * batch], single[j], atol=1e-5)
                for i, single in enumerate(alone) for j, a in enumerate(stacked)
            )
        except Exception:  # ONNX Runtime refused the stacked batch
            same = False
        self.stackable = "yes" if same else "no"

    def _trial_candidate(self) -> Candidate:
        if self.blocks:
            return Candidate(blocks=frozenset({next(iter(self.blocks))}))
        for gid, index in self.mask_index.items():
            return Candidate(channels={gid: frozenset({next(iter(index))})})
        return Candidate()

    def features(
        self, batches: Iterable[Mapping[str, np.ndarray]], candidates: Sequence[Candidate], *, stack: int = 8,
        base: Candidate | None = None,
    ) -> list[np.ndarray]:
        """The tapped representation of every candidate over all `batches`, as one
        [n, features] array per candidate: every tap flattened per sample, side by side
        (candidates run `stack` at a time). With `base` (e.g. the search's parent), the
        candidates that drop more blocks than it, with its channels, run from their first
        changed node only (prefix caching, runtime/prefix.py); `base` itself among
        `candidates` comes from the same run."""
        if base is not None:
            return self._features_from(list(batches), candidates, stack, base)
        parts: list[list[np.ndarray]] = [[] for _ in candidates]
        for feeds in batches:
            n = len(next(iter(feeds.values())))
            for start in range(0, len(candidates), max(1, stack)):
                chunk = candidates[start:start + stack]
                for i, result in enumerate(self.run(feeds, chunk)):
                    parts[start + i].append(np.concatenate([result[t].reshape(n, -1) for t in self.taps], axis=1))
        return [np.concatenate(p, axis=0) if p else np.zeros((0, 0), np.float32) for p in parts]

    def _features_from(self, batches: list, candidates: Sequence[Candidate], stack: int, base: Candidate) -> list[np.ndarray]:
        if self._suffixes is None:
            self._suffixes = Suffixes(self, self.providers, self.threads)
        cuts = [self._suffixes.cut(base, c) for c in candidates]
        if all(p is None for p in cuts):
            return self.features(batches, candidates, stack=stack)
        cached = prefix_features(self._suffixes, batches, base, candidates, cuts)
        if cached is None:  # too much to keep: whole runs
            return self.features(batches, candidates, stack=stack)
        out: list[np.ndarray | None] = [cached.get(i) if c != base else cached[-1] for i, c in enumerate(candidates)]
        rest = [i for i, got in enumerate(out) if got is None]
        if rest:
            for i, feats in zip(rest, self.features(batches, [candidates[i] for i in rest], stack=stack)):
                out[i] = feats
        return out

    def activation_scores(self, batches: Iterable[Mapping[str, np.ndarray]]) -> dict[int, float]:
        """Mean |activation| of every class where its group is consumed (the masked
        inputs of the probe), over `batches` of calibration data: a data-driven criterion."""
        made = {v.name for n in self.model.graph for v in n.outputs if v is not None}
        muls = [n for n in self.model.graph if n.name.startswith(MASK_MUL_PREFIX) and n.inputs[0].name in made]
        if not muls:
            return {}
        session = tapped_session(self.model, [n.inputs[0].name for n in muls])
        sums: list[np.ndarray] = []
        for count, feeds in enumerate(batches, start=1):
            full = self.feeds_for(feeds, [Candidate()])
            arrays = session.run(None, {i.name: full[i.name] for i in session.get_inputs()})
            means = [self._per_position(node, arr) for node, arr in zip(muls, arrays)]
            sums = means if not sums else [s + m for s, m in zip(sums, means)]
        if not sums:
            return {}
        inverse = {col: c for index in self.mask_index.values() for c, col in index.items()}
        totals: dict[int, list[float]] = {}
        for node, per_pos in zip(muls, sums):
            idx = self.model.graph.initializers[node.name.replace(MASK_MUL_PREFIX, MASK_IDX_PREFIX)].const_value.numpy()
            for col, value in zip(idx.tolist(), (per_pos / count).tolist()):
                if col in inverse:
                    totals.setdefault(inverse[col], []).append(value)
        return {c: float(np.mean(v)) for c, v in totals.items()}

    def _per_position(self, node, arr: np.ndarray) -> np.ndarray:
        """Mean |value| at each masked position of one masked input (per batch)."""
        idx = self.model.graph.initializers[node.name.replace(MASK_MUL_PREFIX, MASK_IDX_PREFIX)].const_value.numpy()
        axis = next(a for a, d in enumerate(arr.shape) if d == len(idx) and a > 0)
        return np.abs(arr).mean(axis=tuple(a for a in range(arr.ndim) if a != axis))
