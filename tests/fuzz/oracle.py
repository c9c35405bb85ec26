"""An independent checker of the `onnxprune prune` contract (uses no onnxprune code).

The contract (README "Exit codes", cli.py docstring):
- exit 0: the output file exists, passes the ONNX checker (full check), runs in ONNX
  Runtime (1 thread) on the same random inputs as the original, has exactly the same
  graph inputs and outputs (names, dtypes, declared shapes, in order) and produces the
  same output shapes; at ratio 0 the outputs equal the original's (rtol = atol = 1e-4).
  Nothing but the files asked for appears in the output's directory.
- exit 1: stderr is exactly one line starting with "onnxprune: error:" (a line
  "onnxprune: internal error: ..." is a broken contract: an unexpected exception), and
  neither the output file nor any temporary file or folder is left in the output's
  directory.
- anything else (another exit code, an exception escaping `main`, a traceback on
  stdout or stderr) is a failure.

Every failed assertion message starts with a tag in brackets ([internal-error],
[not-in-ort], ...), so failures can be told apart and bucketed.
"""
from __future__ import annotations

import os
import traceback

import numpy as np
import onnx
from checks import check_model, declared_shape, feeds, run

ERROR_PREFIX = "onnxprune: error:"
INTERNAL_PREFIX = "onnxprune: internal error:"
RTOL = ATOL = 1e-4
FEED_BATCH = 2  # value given to a symbolic batch axis


def _io_signature(values, initializers: set[str]) -> list[tuple]:
    sig = []
    for v in values:
        if v.name in initializers:
            continue
        t = v.type.tensor_type
        dims = None
        if t.HasField("shape"):
            dims = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim
            )
        sig.append((v.name, t.elem_type, dims))
    return sig


def run_cli(argv: list[str], capfd) -> tuple[object, str, str]:
    """`onnxprune.cli.main(argv)` in-process, captured at the file-descriptor level by
    pytest's `capfd` (so ONNX Runtime's own log lines count, as on a terminal):
    (exit code, stdout, stderr). An exception escaping `main` is what a user would see
    as a traceback, so it is appended to stderr as one."""
    from onnxprune.cli import main

    capfd.readouterr()
    escaped = ""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # noqa: BLE001 - anything leaving main breaks the contract
        code = "exception"
        escaped = traceback.format_exc()
    out, err = capfd.readouterr()
    return code, out, err + escaped


def listing(directory: str | os.PathLike) -> set[str]:
    return set(os.listdir(directory))


def check_contract(
    original: str | os.PathLike,
    code,
    stdout: str,
    stderr: str,
    output: str | os.PathLike,
    *,
    ratio: float | None = None,
    before: set[str] | None = None,
    also_written: tuple[str, ...] = (),
) -> None:
    """Raise AssertionError (tagged message) when the run broke the contract.

    `before`: names in the output's directory before the run (default: empty).
    `also_written`: other file names the command was asked to write there on success
    (--report, --save-plan). `ratio` 0 turns on the equal-outputs check.
    """
    output = os.fspath(output)
    out_dir = os.path.dirname(os.path.abspath(output))
    before = set(before or ())
    text = f"{stdout}\n{stderr}"
    assert "Traceback (most recent call last)" not in text, f"[traceback] exit {code}: {stderr.strip()[-2000:]}"
    assert code in (0, 1), f"[exit-code] exit {code!r}, stderr: {stderr.strip()[-1000:]}"

    if code == 1:
        lines = stderr.splitlines()
        assert len(lines) == 1, f"[stderr-lines] exit 1 with {len(lines)} stderr lines: {stderr.strip()[:1000]!r}"
        line = lines[0]
        assert not line.startswith(INTERNAL_PREFIX), f"[internal-error] {line}"
        assert line.startswith(ERROR_PREFIX), f"[stderr-prefix] {line!r}"
        if os.path.basename(output) not in before:
            assert not os.path.exists(output), f"[output-left] exit 1 but {output} exists: {line}"
        left = listing(out_dir) - before
        assert not left, f"[files-left] exit 1 left {sorted(left)} in the output directory: {line}"
        return

    # exit 0
    assert os.path.isfile(output), f"[no-output] exit 0 but no file at {output}"
    left = listing(out_dir) - before - {os.path.basename(output), *also_written}
    assert not left, f"[files-left] exit 0 left {sorted(left)} besides the output"
    orig = onnx.load(os.fspath(original))
    try:
        pruned = onnx.load(output)
    except Exception as err:  # noqa: BLE001
        raise AssertionError(f"[unreadable-output] {type(err).__name__}: {err}") from None
    try:
        check_model(pruned)
    except Exception as err:  # noqa: BLE001
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise AssertionError(f"[checker] output fails onnx.checker: {type(err).__name__}: {first}") from None

    oi = {i.name for i in orig.graph.initializer}
    pi = {i.name for i in pruned.graph.initializer}
    assert _io_signature(pruned.graph.input, pi) == _io_signature(orig.graph.input, oi), (
        f"[inputs-changed] {_io_signature(orig.graph.input, oi)} -> {_io_signature(pruned.graph.input, pi)}"
    )
    assert _io_signature(pruned.graph.output, set()) == _io_signature(orig.graph.output, set()), (
        f"[outputs-changed] {_io_signature(orig.graph.output, set())} -> {_io_signature(pruned.graph.output, set())}"
    )

    x = feeds(orig, seed=0, batch=FEED_BATCH)
    want = run(orig, x)
    try:
        got = run(output, x)
    except Exception as err:  # noqa: BLE001
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise AssertionError(f"[not-in-ort] output does not run in ONNX Runtime on the original's inputs "
                             f"(batch {FEED_BATCH} for a symbolic batch): {type(err).__name__}: {first[:500]}") from None
    for v in orig.graph.output:
        assert got[v.name].shape == want[v.name].shape, (
            f"[output-shape] {v.name}: original {want[v.name].shape}, pruned {got[v.name].shape}"
        )
        assert got[v.name].shape == declared_shape(v, FEED_BATCH), (
            f"[output-shape-declared] {v.name}: declared {declared_shape(v, FEED_BATCH)}, got {got[v.name].shape}"
        )
    if ratio == 0:
        for v in orig.graph.output:
            a, b = want[v.name], got[v.name]
            if not np.allclose(b, a, rtol=RTOL, atol=ATOL, equal_nan=True):
                err = float(np.max(np.abs(a.astype(np.float64) - b)))
                raise AssertionError(f"[ratio0-values] {v.name}: max |diff| {err:.3g} at --ratio 0")
