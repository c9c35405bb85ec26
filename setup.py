"""onnxprune: structured pruning of ONNX graphs (channels, heads, blocks) with verified output."""
from setuptools import find_packages, setup

setup(
    name="onnxprune",
    version="0.1.0",
    description="Prune any CNN or transformer at the ONNX graph level and emit a smaller, verified model",
    packages=find_packages(include=["onnxprune", "onnxprune.*"]),
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
        "test": ["pytest>=7", "hypothesis>=6", "scikit-learn>=1.3", "onnx-tool>=0.9", "matplotlib>=3.6", "Pillow>=9"],
        "models": ["torch>=2.4", "onnxscript>=0.2", "scikit-learn>=1.3"],
    },
    entry_points={"console_scripts": ["onnxprune=onnxprune.cli:main"]},
)
