"""Explore and bucket failures (a helper script, not a test).

    python tests/fuzz/explore.py 2000               # run 2000 examples, bucket failures
    python tests/fuzz/explore.py 2000 --seed 7      # another sample (not derandomized)
    python tests/fuzz/explore.py 3000 --shrink TAG  # shrink to a minimal model whose
                                                    # failure signature contains TAG

Every failure is bucketed by its signature (the oracle's tag plus the error text with
names and numbers masked); the smallest model of each bucket is saved under
tests/fuzz/failures/explore/<n>/. Exit 1 with a proper one-line error (a refusal) is not a
failure of the contract, but refusals are tallied too, since a refusal of a valid model
at ratio 0 is worth a look.
"""
from __future__ import annotations

import argparse
import collections
import io
import os
import re
import shutil
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

set_hypothesis_home_dir(str(HERE / ".hypothesis"))
from graphs import random_models
from oracle import check_contract

from onnxprune.cli import main


def signature(message: str) -> str:
    s = message.splitlines()[0]
    s = re.sub(r"'[^']*'", "'_'", s)
    s = re.sub(r"\([^()]*\)", "(_)", s)
    s = re.sub(r"\[[^\[\]]*\]", "[_]", s) if not s.startswith("[") else s[: s.index("]") + 1] + re.sub(
        r"\[[^\[\]]*\]", "[_]", s[s.index("]") + 1:])
    s = re.sub(r"[-\d.e+]*\d", "#", s)
    s = re.sub(r"/\S+", "PATH", s)
    return s[:220]


def run_captured(argv, tmp: Path):
    """main(argv) with stdout and stderr captured at the file-descriptor level (so
    ONNX Runtime's own log lines count, as they would on a terminal)."""
    import traceback

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    files = tmp / "stdout.txt", tmp / "stderr.txt"
    fds = [os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) for f in files]
    escaped = ""
    try:
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        with redirect_stdout(io.TextIOWrapper(os.fdopen(os.dup(1), "wb"), write_through=True)) as o, \
                redirect_stderr(io.TextIOWrapper(os.fdopen(os.dup(2), "wb"), write_through=True)) as e:
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
            except BaseException:  # noqa: BLE001
                code, escaped = "exception", traceback.format_exc()
            o.flush()
            e.flush()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*fds, *saved):
            os.close(fd)
    text = [f.read_text(errors="replace") for f in files]
    for f in files:
        f.unlink()
    return code, text[0], text[1] + escaped


def run_case(gm, ratio, global_ranking):
    tmp = Path(tempfile.mkdtemp(prefix="onnxprune-explore-"))
    try:
        src = tmp / "model.onnx"
        onnx.save(gm.model, src)
        (tmp / "out").mkdir()
        out = tmp / "out" / "pruned.onnx"
        argv = ["prune", str(src), "-o", str(out), "--ratio", str(ratio)] + (["--global"] if global_ranking else [])
        code, stdout, stderr = run_captured(argv, tmp)
        try:
            check_contract(src, code, stdout, stderr, out, ratio=ratio, before=set())
            return code, None, stderr
        except AssertionError as err:
            return code, str(err), stderr
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main_(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--shrink", metavar="TAG")
    ap.add_argument("--out", default=str(HERE / "failures" / "explore"))
    args = ap.parse_args(argv)
    buckets: dict[str, list] = {}
    refusals = collections.Counter()
    refused: dict[str, tuple] = {}
    codes = collections.Counter()
    t0 = time.time()

    @st.composite
    def cases(draw):
        return draw(random_models()), draw(st.sampled_from([0.0, 0.3, 0.5])), draw(st.integers(0, 3)) == 3

    @settings(max_examples=args.n, deadline=None, derandomize=args.seed is None, database=None,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(cases())
    def explore(case):
        gm, ratio, glob = case
        code, failure, stderr = run_case(gm, ratio, glob)
        codes[code] += 1
        if failure is None:
            if code == 1:
                sig = signature(stderr.strip())
                refusals[sig] += 1
                if sig not in refused or gm.n_nodes < refused[sig][0].n_nodes:
                    refused[sig] = (gm, ratio, glob, stderr.strip())
            return
        sig = signature(failure)
        if args.shrink:
            assert args.shrink not in sig, (failure, gm, ratio, glob)
            return
        b = buckets.setdefault(sig, [0, None])
        b[0] += 1
        if b[1] is None or gm.n_nodes < b[1][0].n_nodes:
            b[1] = (gm, ratio, glob, failure)

    if args.seed is not None:
        from hypothesis import seed

        explore = seed(args.seed)(explore)
    try:
        explore()
    except AssertionError as err:  # --shrink: the minimal example
        failure, gm, ratio, glob = err.args[0]
        d = Path(args.out) / "shrunk"
        d.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"\W+", "-", args.shrink).strip("-")
        onnx.save(gm.model, d / f"{name}.onnx")
        print(f"shrunk ({gm.n_nodes} nodes), ratio {ratio}, global {glob}:\n{failure}\n{gm!r}\n-> {d / name}.onnx")
        return 1
    print(f"{sum(codes.values())} runs in {time.time() - t0:.1f} s; exit codes {dict(codes)}")
    print("refusals (exit 1, proper message):")
    for i, (sig, n) in enumerate(refusals.most_common()):
        gm, ratio, glob, line = refused[sig]
        d = Path(args.out) / f"refusal-{i}"
        d.mkdir(parents=True, exist_ok=True)
        onnx.save(gm.model, d / "model.onnx")
        (d / "failure.txt").write_text(f"ratio {ratio} global {glob}\n{line}\n{gm!r}\n")
        print(f"  {n:5d}  {sig}\n         smallest: {gm.n_nodes} nodes, ratio {ratio}, global {glob} -> {d}")
    print("failures:")
    for i, (sig, (n, (gm, ratio, glob, failure))) in enumerate(sorted(buckets.items(), key=lambda kv: -kv[1][0])):
        d = Path(args.out) / str(i)
        d.mkdir(parents=True, exist_ok=True)
        onnx.save(gm.model, d / "model.onnx")
        (d / "failure.txt").write_text(f"ratio {ratio} global {glob}\n{failure}\n{gm!r}\n")
        print(f"  {n:5d}  {sig}\n         smallest: {gm.n_nodes} nodes, ratio {ratio}, global {glob} -> {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main_())
