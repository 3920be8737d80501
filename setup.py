"""Installs the `prometar` package only (never top-level `datasets` / `trainers`)."""
from setuptools import find_packages, setup

setup(
    name="prometar",
    version="0.1.0",
    description="ProMetaR (Prompt Learning via Meta-Regularization, CVPR 2024) for CLIP, with or without Dassl",
    python_requires=">=3.10",
    # The repo's top-level configs/ ships inside the wheel as prometar/configs/ (package data; no copy in the tree).
    # Editable installs and source checkouts read it in place: prometar.shipped.configs_dir() finds either.
    packages=find_packages(include=["prometar", "prometar.*"]) + ["prometar.configs"],
    package_dir={"prometar.configs": "configs"},
    package_data={"prometar": ["assets/*"], "prometar.configs": ["datasets/*.yaml", "trainers/*/*.yaml"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "openai-clip>=1.0",
        "setuptools<81",  # openai-clip imports pkg_resources, removed in setuptools 81
        "yacs>=0.1.8",
        "tqdm",
        "tabulate",
        "numpy",
        "pillow",
        "matplotlib",
    ],
    extras_require={
        # open_clip models (MODEL.BACKBONE.NAME open_clip:..., hf-hub:..., local folders); tested with 3.3
        "open_clip": ["open_clip_torch>=3.3"],
        "test": ["pytest>=7", "submitit>=1.5", "open_clip_torch>=3.3"],
        "data": ["gdown", "scipy"],
        "slurm": ["submitit>=1.5"],
    },
    entry_points={"console_scripts": ["prometar=prometar.cli:main"]},
)
