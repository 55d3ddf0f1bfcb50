"""Readers the output tests share: the Khronos glTF validator (through node) and a small glTF
reader that poses the skeleton from the file's nodes and animation keys.

Tests import these as ``from tests.file_checks import ...``.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

_VALIDATE_JS = """
const fs = require('fs');
const validator = require('gltf-validator');
validator.validateBytes(new Uint8Array(fs.readFileSync(process.argv[1])), {maxIssues: 0})
  .then((r) => console.log(JSON.stringify(r.issues)))
  .catch((e) => { console.error(String(e)); process.exit(1); });
"""


@functools.lru_cache(maxsize=1)
def _node_path() -> str | None:
    """NODE_PATH under which ``require('gltf-validator')`` works, or None (no node / no validator)."""
    if shutil.which("node") is None:
        return None
    paths = [str(Path(__file__).resolve().parents[1] / "node_modules")]
    if shutil.which("npm") is not None:
        root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, timeout=60)
        paths.append(root.stdout.strip())
    node_path = os.pathsep.join(p for p in paths if p)
    probe = subprocess.run(["node", "-e", "require('gltf-validator')"], capture_output=True, timeout=60,
                           env={**os.environ, "NODE_PATH": node_path})
    return node_path if probe.returncode == 0 else None


def validate_gltf(path: Path) -> dict:
    """The Khronos validator's ``issues`` for a ``.glb`` (``numErrors``, ``numWarnings``,
    ``numInfos``, ``numHints``, ``messages``); skips the test where node or the npm package
    ``gltf-validator`` is missing (``.ci/run`` installs it)."""
    node_path = _node_path()
    if node_path is None:
        pytest.skip("glTF validator not run: needs node and `npm install -g gltf-validator`")
    done = subprocess.run(["node", "-e", _VALIDATE_JS, str(path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NODE_PATH": node_path})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_valid_gltf(path: Path) -> None:
    """0 errors, 0 warnings, 0 infos from the Khronos validator (the codes are in the message)."""
    issues = validate_gltf(path)
    counts = (issues["numErrors"], issues["numWarnings"], issues["numInfos"])
    codes = sorted({m["code"] for m in issues["messages"]})
    assert counts == (0, 0, 0), f"{path.name}: errors, warnings, infos {counts}: {codes}"


def quat_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = np.asarray(q, dtype=np.float64)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


class Glb:
    """A ``.glb`` read with pygltflib, with its accessors as arrays and its skeleton posed."""

    def __init__(self, path: Path) -> None:
        import pygltflib

        self.doc = pygltflib.GLTF2().load(str(path))
        self.blob = self.doc.binary_blob()

    def accessor(self, index: int) -> np.ndarray:
        acc = self.doc.accessors[index]
        view = self.doc.bufferViews[acc.bufferView]
        dtype = {5126: np.float32, 5123: np.uint16, 5125: np.uint32, 5121: np.uint8}[acc.componentType]
        width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}[acc.type]
        data = np.frombuffer(self.blob[view.byteOffset:view.byteOffset + view.byteLength], dtype=dtype)
        return data.reshape(acc.count, width)

    def attribute(self, name: str) -> np.ndarray:
        return self.accessor(getattr(self.doc.meshes[0].primitives[0].attributes, name))

    def keys(self, node: int, path: str) -> np.ndarray | None:
        anim = self.doc.animations[0]
        for ch in anim.channels:
            if ch.target.node == node and ch.target.path == path:
                return self.accessor(anim.samplers[ch.sampler].output)
        return None

    def joint_positions(self, frame: int | None) -> np.ndarray:
        """World positions ``(J, 3)`` of the skin's joints: the animation's keys at ``frame``, or
        the nodes' own transforms (the rest pose) for None."""
        nodes = self.doc.nodes
        parent = {c: i for i, n in enumerate(nodes) for c in (n.children or [])}
        world: dict[int, np.ndarray] = {}

        def matrix(i: int) -> np.ndarray:
            if i in world:
                return world[i]
            n = nodes[i]
            t = np.asarray(n.translation if n.translation is not None else [0.0, 0.0, 0.0], dtype=np.float64)
            q = np.asarray(n.rotation if n.rotation is not None else [0.0, 0.0, 0.0, 1.0], dtype=np.float64)
            if frame is not None:
                tk, rk = self.keys(i, "translation"), self.keys(i, "rotation")
                t = t if tk is None else tk[frame].astype(np.float64)
                q = q if rk is None else rk[frame].astype(np.float64)
            local = np.eye(4)
            local[:3, :3], local[:3, 3] = quat_matrix(q), t
            world[i] = local if i not in parent else matrix(parent[i]) @ local
            return world[i]

        return np.array([matrix(j)[:3, 3] for j in self.doc.skins[0].joints])


def _axis_rotation(axis: str, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    return {"X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def bvh_joint_positions(path: Path) -> tuple[list[str], np.ndarray, float]:
    """A BVH file read with the ``bvh`` library (PyPI) and posed the way BVH defines it: each
    joint's transform is its parent's, then its OFFSET (plus the root's position channels), then
    its rotation channels applied in the order listed. Returns (joint names, ``(T, J, 3)``
    positions in file units, frame time)."""
    bvh = pytest.importorskip("bvh", reason="BVH read-back needs the bvh package (pip install bvh)")
    mocap = bvh.Bvh(Path(path).read_text())
    names = mocap.get_joints_names()
    parents = [mocap.joint_parent_index(n) for n in names]
    frames = []
    for f in range(mocap.nframes):
        world: list[np.ndarray] = []
        for j, name in enumerate(names):
            channels = mocap.joint_channels(name)
            values = mocap.frame_joint_channels(f, name, channels)
            local = np.eye(4)
            local[:3, 3] = mocap.joint_offset(name)
            for channel, value in zip(channels, values):
                if channel.endswith("position"):
                    local[:3, 3] += value * np.eye(3)["XYZ".index(channel[0])]
                else:
                    local[:3, :3] = local[:3, :3] @ _axis_rotation(channel[0], value)
            world.append(local if parents[j] < 0 else world[parents[j]] @ local)
        frames.append([w[:3, 3] for w in world])
    return names, np.array(frames), mocap.frame_time


def read_trc(path: Path) -> tuple[dict[str, str], list[str], np.ndarray, np.ndarray]:
    """A TRC file parsed by its header rules: line 1 ``PathFileType 4 (X/Y/Z) name``, lines 2-3
    the header names and values (checked against the data), line 4 ``Frame# Time`` and the
    marker names each over 3 columns, line 5 ``X1 Y1 Z1 ...``, then rows. Returns (header,
    marker names, ``(T,)`` times, ``(T, M, 3)`` markers in the file's units, NaN where empty)."""
    lines = Path(path).read_text().split("\n")
    first = lines[0].split("\t")
    assert first[:3] == ["PathFileType", "4", "(X/Y/Z)"] and first[3] == Path(path).name
    header = dict(zip(lines[1].split("\t"), lines[2].split("\t"), strict=True))
    assert list(header) == ["DataRate", "CameraRate", "NumFrames", "NumMarkers", "Units", "OrigDataRate",
                            "OrigDataStartFrame", "OrigNumFrames"]
    labels = lines[3].split("\t")
    assert labels[:2] == ["Frame#", "Time"]
    names = labels[2::3]
    assert all(c == "" for i, c in enumerate(labels[2:]) if i % 3), "a marker name spans 3 columns"
    m = int(header["NumMarkers"])
    assert len(names) == m and lines[4].split("\t") == ["", ""] + [f"{a}{i}" for i in range(1, m + 1) for a in "XYZ"]
    rows = [r.split("\t") for r in lines[5:] if r.strip()]
    assert len(rows) == int(header["NumFrames"]) and all(len(r) == 2 + 3 * m for r in rows)
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    values = np.array([[float(v) if v else np.nan for v in r[2:]] for r in rows]).reshape(len(rows), m, 3)
    return header, names, np.array([float(r[1]) for r in rows]), values
