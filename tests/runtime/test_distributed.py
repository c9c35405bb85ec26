"""Candidates scored on Ray workers (runtime/distributed.py), on a local Ray instance with
two CPUs: the features equal the single process's, candidate for candidate, and the
layers and everything searches choose the same blocks and channels with --workers 2."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install onnxprune[ray])")

from onnxprune.cli import main
from onnxprune.compiler.workspace import Workspace
from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import load_model
from onnxprune.runtime.calibration import load_calibration
from onnxprune.runtime.distributed import WorkerPool
from onnxprune.runtime.probe import Candidate, ProbeModel

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "models", "digits")
MODEL, CALIB = os.path.join(ROOT, "digits_resnet.onnx"), os.path.join(ROOT, "digits_calib.npz")


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def pool(local_ray):
    workers = WorkerPool(2)
    try:
        yield workers
    finally:
        workers.close()


def test_workers_return_the_single_process_features(pool):
    ws = Workspace(MODEL)
    calib = load_calibration(CALIB, load_model(MODEL), samples=64, batch_size=32)
    probe = ProbeModel(ws.model, blocks=ws.blocks)
    ids = sorted(probe.blocks)
    base = Candidate(blocks=frozenset({ids[0]}))
    candidates = [base] + [Candidate(blocks=base.blocks | {b}) for b in ids[1:]] + [Candidate()]
    here = probe.features(calib.batches(), candidates, base=base)
    there = pool.probe(probe).features(calib.batches(), candidates, base=base)
    assert len(there) == len(candidates)
    for a, b in zip(here, there):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * float(np.abs(a).max()))
    assert not np.allclose(there[1], there[2])  # each candidate its own, in order


def test_more_workers_than_cpus_is_one_line(local_ray):
    with pytest.raises(OnnxPruneError, match="could not start 3 workers"):
        WorkerPool(3, timeout=3)


@pytest.mark.parametrize("method", ["layers", "everything"])
def test_searches_choose_the_same_with_workers(local_ray, tmp_path, method):
    runs = {}
    for workers in ("1", "2"):
        report = tmp_path / f"r{workers}.json"
        args = ["prune", MODEL, "-o", str(tmp_path / f"p{workers}.onnx"), "--method", method, "--calib", CALIB,
                "--samples", "64", "--target-flops", "0.25", "--recover", "none", "--report", str(report),
                "--workers", workers]
        assert main(args) == 0
        runs[workers] = json.loads(report.read_text())
    assert runs["2"]["settings"]["workers"] == 2 and runs["1"]["settings"]["workers"] == 1
    assert runs["2"]["plan"]["blocks"] == runs["1"]["plan"]["blocks"]
    assert runs["2"]["plan"]["channels"] == runs["1"]["plan"]["channels"]
    assert runs["2"]["cost"]["macs_reduction"] == runs["1"]["cost"]["macs_reduction"] > 0.2


def test_workers_are_for_the_searches(tmp_path, capfd):
    assert main(["prune", MODEL, "-o", str(tmp_path / "p.onnx"), "--ratio", "0.1", "--workers", "2"]) == 2
    err = capfd.readouterr().err
    assert "--workers and --ray score search candidates" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_sweep_as_ray_tasks_gives_the_runs_made_one_by_one(local_ray, tmp_path):
    results = {}
    for workers in ("1", "2"):
        out = tmp_path / workers
        args = ["sweep", MODEL, "-o", str(out), "--calib", CALIB, "--method", "layers", "--target-flops", "0.1", "0.2",
                "--samples", "64", "--recover", "none", "--workers", workers]
        assert main(args) == 0
        results[workers] = [(r["name"], r["macs_reduction"]) for r in json.loads((out / "summary.json").read_text())["runs"]]
    assert results["1"] == results["2"] and len(results["2"]) == 2
