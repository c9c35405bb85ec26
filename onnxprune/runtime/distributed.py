"""The probe's candidates scattered over worker processes with Ray (`pip install
onnxprune[ray]`): `--workers N` starts N local workers, `--ray ADDRESS` joins a cluster.

Each worker holds a copy of the current probe (runtime/probe.py `ProbeModel.state`:
the probe graph and what its surgery recorded, sent once per probe through Ray's object
store) and its own ONNX Runtime sessions, one intra-op thread each. `features` deals
the candidates round-robin to the workers; each worker runs its chunk exactly
as the single process would (prefix caching included: each runs the base itself), and
the features come back in order, so CKA and the choice are made in this process as
before. What is sent per call: the calibration batches once (an object reference every
worker reads), the candidates (a few ids each) and, back, each candidate's features
([samples, tapped width] floats): on N machines the work per worker falls as 1/N while
what travels per candidate stays one feature matrix.

What this does not do: scatter the recovery statistics or the rewrite (they run here),
or share suffix sessions between workers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from onnxprune.errors import OnnxPruneError

READY_TIMEOUT = 30  # seconds for the workers to start


def _ray():
    try:
        import ray
    except ImportError as err:
        raise OnnxPruneError("--workers and --ray need Ray: pip install onnxprune[ray]") from err
    return ray


def start_ray(cpus: int, address: str | None = None):
    """Ray, started here with `cpus` CPUs or joined to the cluster at `address` (unless
    this process already started it)."""
    ray = _ray()
    if not ray.is_initialized():
        kwargs = {"address": address} if address else {"num_cpus": cpus}
        try:
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **kwargs)
        except Exception as err:  # a cluster address that answers nothing, a bad address
            raise OnnxPruneError(f"Ray could not start or connect ({address or 'local'}): "
                                 f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}") from err
    return ray


class WorkerPool:
    """`workers` Ray actors, each able to hold a probe; `address` joins a running cluster
    (None: a local Ray instance with `workers` CPUs). `workers=None`: one per CPU of the
    cluster."""

    def __init__(self, workers: int | None, address: str | None = None, *, timeout: float = READY_TIMEOUT):
        if workers is not None and workers < 1:
            raise OnnxPruneError(f"--workers must be at least 1, got {workers}")
        ray = start_ray(workers or 1, address)
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1)(_ProbeWorker)
        self.actors = [actor.remote() for _ in range(workers)]
        try:  # an actor Ray cannot place (too few free CPUs) would wait forever
            ray.get([a.ready.remote() for a in self.actors], timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            self.close()
            free = ray.available_resources().get("CPU", 0)
            raise OnnxPruneError(f"Ray could not start {workers} workers in {timeout:g} s "
                                 f"({free:g} CPUs free): lower --workers") from None

    def close(self) -> None:
        """Stop the workers (their CPUs go back to Ray)."""
        ray = _ray()
        for a in self.actors:
            ray.kill(a)
        self.actors = []

    def probe(self, probe) -> DistributedProbe:
        """`probe` with its `features` run on the workers (everything else local)."""
        return DistributedProbe(self, probe)


class DistributedProbe:
    """A ProbeModel whose `features` are computed by a WorkerPool."""

    def __init__(self, pool: WorkerPool, probe):
        self.pool, self.local, self.key, self._sent = pool, probe, uuid.uuid4().hex, False

    def __getattr__(self, name):
        return getattr(self.local, name)

    def features(self, batches: Iterable[Mapping[str, np.ndarray]], candidates: Sequence, *, stack: int = 8,
                 base=None) -> list[np.ndarray]:
        actors = self.pool.actors
        if len(candidates) < 2 or len(actors) < 2:
            return self.local.features(batches, candidates, stack=stack, base=base)
        ray = _ray()
        if not self._sent:
            state = ray.put(self.local.state())
            ray.get([a.load.remote(self.key, state) for a in actors])
            self._sent = True
        data = ray.put(list(batches))
        # Dealt round-robin: candidates come in graph order, and an early cut costs more
        # than a late one, so contiguous chunks would leave one worker the heavy end.
        n = len(actors)
        chunks = [list(candidates[w::n]) for w in range(n)]
        parts = ray.get([a.features.remote(self.key, data, chunk, stack, base)
                         for a, chunk in zip(actors, chunks) if chunk])
        out: list[np.ndarray] = [None] * len(candidates)
        for w, part in enumerate(parts):
            out[w::n] = part
        return out


class _ProbeWorker:
    """One Ray actor: the latest probe it was sent, by key."""

    def __init__(self):
        self.key, self.probe = None, None

    def ready(self) -> bool:
        return True

    def load(self, key: str, state: dict) -> None:
        from onnxprune.runtime.probe import ProbeModel

        self.key, self.probe = key, ProbeModel.from_state(state, providers=["CPUExecutionProvider"], threads=1)

    def features(self, key: str, batches: list, candidates: list, stack: int, base) -> list[np.ndarray]:
        if key != self.key:
            raise OnnxPruneError("worker holds another probe (it was sent a newer one)")
        return self.probe.features(batches, candidates, stack=stack, base=base)
