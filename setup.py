"""onnxprune: structured pruning of ONNX graphs (channels, heads, blocks) with verified output."""
from setuptools import find_packages, setup

setup(
    name="onnxprune",
    version="0.1.0",
    description="Prune any CNN or transformer at the ONNX graph level and emit a smaller, verified model",
    packages=find_packages(include=["onnxprune", "onnxprune.*"]),
    # The HTML page's assets (vendored JavaScript with its licences) and the report schemas.
    package_data={"onnxprune.tools": ["html/*"], "onnxprune": ["schemas/*.json"]},
    python_requires=">=3.10",
    install_requires=[
        "onnx>=1.17",
        "onnx-ir>=0.1.14",  # Model.clone (tensors shared)
        "numpy>=1.24",
        "networkx>=3.0",
    ],
    extras_require={
        # CPU runtime is the default; `gpu` swaps it for onnxruntime-gpu. Install one
        # of `cpu` or `gpu`, never both: the two wheels overwrite each other's files.
        "cpu": ["onnxruntime>=1.17"],
        "gpu": ["onnxruntime-gpu>=1.17", "cupy-cuda13x>=13"],
        # Decoding image folders for calibration data.
        "images": ["Pillow>=9"],
        "plot": ["matplotlib>=3.6"],
        # Candidates scored in worker processes or on a cluster (--workers, --ray).
        "ray": ["ray>=2.9"],
        # onnxprune as an Olive pass (onnxprune/integrations/olive.py). olive-ai needs torch,
        # so never in CI's install; it imports requests without declaring it (0.13.0).
        "olive": ["olive-ai>=0.13", "requests"],
        "test": ["pytest>=7", "hypothesis>=6", "scikit-learn>=1.3", "onnx-tool>=0.9", "matplotlib>=3.6", "Pillow>=9",
                 "ray>=2.9", "jsonschema>=4", "playwright>=1.40"],
        # Exporters, to rebuild the committed fixtures (models/): never in CI's install.
        # Each framework in a venv of its own (they pin different numpy/protobuf).
        "models": ["torch>=2.4", "onnxscript>=0.2", "scikit-learn>=1.3"],
        "models-keras": ["tensorflow-cpu==2.21.0", "tf2onnx==1.17.0"],
        "models-paddle": ["paddlepaddle==3.3.1", "paddle2onnx==2.1.0"],
        "models-jax": ["jax==0.10.2", "jaxlib==0.10.2", "flax==0.12.8", "jax2onnx==0.17.1"],
        "models-sklearn": ["scikit-learn==1.9.1", "skl2onnx==1.20.0"],
        "models-fp16": ["onnxconverter-common==1.16.0"],
    },
    entry_points={"console_scripts": ["onnxprune=onnxprune.cli:main"]},
)
