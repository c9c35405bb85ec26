"""The fuzzer's minimised reproducers (tests/fuzz/cases/, built by make_cases.py) as
regression tests: the oracle must accept each run.

"refuse-*" cases break no rule of the contract today (exit 1, one proper line: the
pruned model failed onnxprune's own verification), so the oracle accepts them; the
README also promises "What it cannot prune safely it freezes", which
`test_refusal_case_prunes` checks: those valid models must prune (exit 0, contract held).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from oracle import check_contract, run_cli

CASES = Path(__file__).resolve().parent / "cases"
TABLE = {k: v for k, v in json.loads((CASES / "cases.json").read_text()).items() if v["check"] == "oracle"}


def _run(name: str, tmp_path, capfd):
    src = tmp_path / "src" / f"{name}.onnx"
    src.parent.mkdir()
    shutil.copy(CASES / TABLE[name]["model"], src)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "pruned.onnx"
    args = TABLE[name]["args"]
    code, stdout, stderr = run_cli(["prune", str(src), "-o", str(out), *args], capfd)
    ratio = float(args[args.index("--ratio") + 1]) if "--ratio" in args else 0.5
    return src, out, ratio, code, stdout, stderr


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("ONNXPRUNE_DEBUG", raising=False)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_case_keeps_contract(name, tmp_path, capfd):
    src, out, ratio, code, stdout, stderr = _run(name, tmp_path, capfd)
    check_contract(src, code, stdout, stderr, out, ratio=ratio, before=set())


@pytest.mark.parametrize("name", sorted(n for n in TABLE if n.startswith("refuse-")))
def test_refusal_case_prunes(name, tmp_path, capfd):
    src, out, ratio, code, stdout, stderr = _run(name, tmp_path, capfd)
    assert code == 0, f"a valid model was refused instead of frozen where unsafe: {stderr.strip()[:500]}"
    check_contract(src, code, stdout, stderr, out, ratio=ratio, before=set())
