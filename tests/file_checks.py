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
