"""Prefix caching for the probe (runtime/probe.py): a candidate that drops the blocks a
base candidate drops plus others, with the same channels, computes exactly what the base
computes up to the gate of the first extra block (in graph order). So the base runs once
per calibration batch, keeping the values that cross into each cut, and every such
candidate runs only its suffix: a sub-model of the probe's graph from the gate's Mul on,
fed those values. On a chain of residual blocks a candidate then costs what follows its
block, about half the network on average, instead of all of it.

A suffix holds the nodes from its cut on (in the graph's topological order); its inputs
are every value those nodes read that earlier nodes made, and the graph inputs they
read (gates, masks, model inputs: fed as for a whole run); its outputs are the probe's
outputs it makes. Outputs made before the cut are the base's. Sessions are built on
first use and kept for the probe's life (a search reuses them every iteration).

What this does not do: cut at channel masks (a candidate whose channels differ from the
base's runs whole), stack candidates (a suffix runs one candidate over the batch, which
is already many rows), cut inside control flow (nodes with subgraphs: the probe runs
whole), or serve models whose weights exceed `MAX_BYTES` (each suffix session holds its
own copy of the weights it reads).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.model_io import initializer_bytes, to_proto
from onnxprune.passes.probe_graph import GATE_PREFIX
from onnxprune.runtime.session import ort_session, run_session, tapped_session

MAX_BYTES = 256 << 20  # weights up to this size get suffix sessions
MAX_CACHE_BYTES = 1 << 30  # values one base run may keep for the suffixes
ROWS = 256  # calibration rows per suffix run, where batches can be joined


class Suffixes:
    """Suffix sessions of one probe (`probe.model` after its surgery), by cut position."""

    def __init__(self, probe, providers=None, threads: int = 0):
        self.probe, self.providers, self.threads = probe, providers, threads
        # On CPU with ORT choosing its threads, suffixes run concurrently, one thread each.
        on_cpu = all(str(p[0] if isinstance(p, tuple) else p) == "CPUExecutionProvider" for p in providers or ["CPUExecutionProvider"])
        self.parallel = _usable_cpus() if on_cpu and threads == 0 else 1
        self.enabled = initializer_bytes(probe.model) <= MAX_BYTES and not _has_subgraphs(probe.model)
        self.sessions: dict[int, tuple[object, list[str], list[str]]] = {}
        self._base: tuple[frozenset[int], object] | None = None
        if not self.enabled:
            return
        self.proto = to_proto(probe.model)
        self.nodes = list(self.proto.graph.node)
        self.initializers = {t.name: t for t in self.proto.graph.initializer}
        self.graph_inputs = {v.name: v for v in self.proto.graph.input}
        self.outputs = {v.name: v for v in self.proto.graph.output}
        gates = {f"{GATE_PREFIX}{bid}": bid for bid in probe.blocks}
        # The gate's Mul reads the gate input: the first node a dropped block changes.
        self.cut_of = {gates[i]: p for p, n in enumerate(self.nodes) for i in n.input if i in gates}

    def cut(self, base, candidate) -> int | None:
        """Where `candidate` first differs from `base`, or None when it differs otherwise
        (other channels, or fewer blocks) and must run whole."""
        if not self.enabled or dict(candidate.channels) != dict(base.channels):
            return None
        extra = candidate.blocks - base.blocks
        if not extra or not base.blocks <= candidate.blocks or not all(b in self.cut_of for b in extra):
            return None
        return min(self.cut_of[b] for b in extra)

    def suffix_nodes(self, position: int) -> list[onnx.NodeProto]:
        """The nodes from `position` on, after copies of the Constant nodes earlier that
        they read (a constant is cheaper to recompute than to feed)."""
        after = self.nodes[position:]
        read = {i for n in after for i in n.input if i}
        constants = [n for n in self.nodes[:position] if n.op_type == "Constant" and n.output[0] in read]
        return constants + after

    def crossing(self, position: int) -> list[str]:
        """The values made before `position` that the nodes from `position` on read."""
        nodes = self.suffix_nodes(position)
        made = {o for n in nodes for o in n.output}
        read = dict.fromkeys(i for n in nodes for i in n.input if i)
        return [v for v in read if v not in made and v not in self.initializers and v not in self.graph_inputs]

    def session(self, position: int, values: Mapping[str, np.ndarray]):
        """(session, its inputs, its outputs) of the suffix from `position`; `values`
        (the base run's) give the element types of the values it is fed."""
        if position not in self.sessions:
            nodes = self.suffix_nodes(position)
            made = {o for n in nodes for o in n.output}
            read = dict.fromkeys(i for n in nodes for i in n.input if i)
            inputs = [v for v in read if v not in made and v not in self.initializers]
            outputs = [o for o in self.probe.output_names if o in made]
            graph = onnx.helper.make_graph(
                nodes, f"suffix_{position}",
                [self._info(v, values) for v in inputs], [self.outputs[o] for o in outputs],
                initializer=[self.initializers[v] for v in read if v in self.initializers],
            )
            model = onnx.helper.make_model(graph, opset_imports=self.proto.opset_import,
                                           ir_version=self.proto.ir_version)
            model.functions.extend(self.proto.functions)
            threads = 1 if self.parallel > 1 else self.threads
            session = ort_session(model, providers=self.providers, intra_op_num_threads=threads, optimize="all")
            self.sessions[position] = (session, inputs, outputs)
        return self.sessions[position]

    def _info(self, name: str, values: Mapping[str, np.ndarray]) -> onnx.ValueInfoProto:
        if name in self.graph_inputs:
            return self.graph_inputs[name]
        array = values[name]
        return onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(array.dtype), None)

    def base_session(self, positions: set[int]):
        """A session of the whole probe whose outputs are the probe's and every value
        crossing into the cuts at `positions` (kept while later calls need no more)."""
        if self._base is None or not positions <= self._base[0]:
            wanted = frozenset(positions | (self._base[0] if self._base is not None else frozenset()))
            crossing = list(dict.fromkeys(v for p in sorted(wanted) for v in self.crossing(p)))
            names = list(self.probe.output_names) + [v for v in crossing if v not in self.probe.output_names]
            self._base = (wanted, tapped_session(self.probe.model, names, providers=self.providers, threads=self.threads))
        return self._base[1]


def prefix_features(suffixes: Suffixes, batches: Iterable[Mapping[str, np.ndarray]], base, candidates: Sequence,
                    cuts: Sequence[int | None]) -> dict[int, np.ndarray] | None:
    """Features (as ProbeModel.features) of the candidates with a cut, by their index,
    and of `base` at index -1; from one base run per batch and one suffix run each.
    None when the values one base run keeps exceed `MAX_CACHE_BYTES` (run whole then)."""
    probe = suffixes.probe
    taps = probe.output_names[:len(probe.taps)]
    session = suffixes.base_session({p for p in cuts if p is not None})
    parts: dict[int, list[np.ndarray]] = {i: [] for i, p in enumerate(cuts) if p is not None}
    parts[-1] = []
    for feeds in _merged(batches, probe):
        n = len(next(iter(feeds.values())))
        base_feeds = probe.feeds_for(feeds, [base])
        values = run_session(session, {i.name: base_feeds[i.name] for i in session.get_inputs()})  # by name
        if sum(a.nbytes for a in values.values()) > MAX_CACHE_BYTES:
            return None
        parts[-1].append(np.concatenate([values[t].reshape(n, -1) for t in taps], axis=1))
        jobs = [(i, suffixes.session(position, values)) for i, position in enumerate(cuts) if position is not None]

        def one(job, feeds=feeds, values=values, n=n):
            i, (suffix, inputs, outputs) = job
            given = probe.feeds_for(feeds, [candidates[i]])
            got = run_session(suffix, {v: given[v] if v in given else values[v] for v in inputs})
            result = {**{t: values[t] for t in taps}, **dict(zip(outputs, got.values()))}
            return i, np.concatenate([result[t].reshape(n, -1) for t in taps], axis=1)

        # Suffix runs are independent: one per core at a time, each on one ONNX Runtime
        # thread (ORT lets go of the GIL), which keeps 2 cores busier than 2 ORT threads
        # on one run (1.4x against 1.7x over one thread, digits ResNet-56).
        if suffixes.parallel > 1 and len(jobs) > 1:
            with ThreadPoolExecutor(suffixes.parallel) as pool:
                done = list(pool.map(one, jobs))
        else:
            done = [one(job) for job in jobs]
        for i, feats in done:
            parts[i].append(feats)
    return {i: np.concatenate(p, axis=0) for i, p in parts.items() if p}


def _merged(batches: Iterable[Mapping[str, np.ndarray]], probe) -> Iterable[Mapping[str, np.ndarray]]:
    """The calibration batches joined into runs of about `ROWS` rows where the probe's
    batch axis is symbolic and carried through (a suffix runs one candidate at a time,
    so it needs rows to keep ONNX Runtime's kernels busy); as given otherwise."""
    if probe.stackable != "yes":
        yield from batches
        return
    pending: list[Mapping[str, np.ndarray]] = []
    rows = 0
    for feeds in batches:
        pending.append(feeds)
        rows += len(next(iter(feeds.values())))
        if rows >= ROWS:
            yield {k: np.concatenate([f[k] for f in pending], axis=0) for k in pending[0]}
            pending, rows = [], 0
    if pending:
        yield {k: np.concatenate([f[k] for f in pending], axis=0) for k in pending[0]}


def _usable_cpus() -> int:
    """The CPUs this process may run on (a container's affinity, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _has_subgraphs(model: ir.Model) -> bool:
    kinds = (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
    return any(attr.type in kinds for n in model.graph for attr in n.attributes.values())
