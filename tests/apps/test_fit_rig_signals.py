"""fit-rig --meshes keeps all or nothing when interrupted (issue 16, theme 3): SIGINT while the
meshes are written leaves no mesh, no subject file and says so; a SIGKILLed run's temporary in
meshes/ is removed by the next run, whose meshes are its own. Real subprocesses, as in
tests/test_cli_signals.py (a signal cannot be tested in-process)."""
from __future__ import annotations

import signal
import time

import pytest

from calibration.formats import save_rig
from mvspin.atomic import TEMPORARY_MARK
from mvspin.body import BodyModel
from mvspin.data.synthetic_recording import RecordingOptions, make_rig_recording, write_openpose_folders
from tests.test_cli_signals import _start

FRAMES = 24


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rig")
    rec = make_rig_recording(BodyModel.free("low"), RecordingOptions(num_frames=FRAMES, num_views=3,
                                                                     bystander_rate=0.0), seed=2)
    write_openpose_folders(rec.detections, rec.rig.names, folder / "kp")
    save_rig(rec.rig, folder / "rig.toml")
    return folder


def _args(files, out):
    # the full-resolution mesh (12k vertices) makes each .obj take long enough to be caught mid-way
    return ["fit-rig", "--rig", str(files / "rig.toml"), "--keypoints", str(files / "kp"), "-o", str(out),
            "--meshes", "--set", "sequence.refine_iterations=5", "sequence.keyframe_step=12"]


def _mesh_temporaries(out):
    folder = out / "meshes"
    return [p for p in folder.iterdir() if TEMPORARY_MARK in p.name] if folder.is_dir() else []


def _wait_for_mesh_temporary(proc, out, timeout=240.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _mesh_temporaries(out):
            return
        if proc.poll() is not None:
            pytest.fail(f"fit-rig ended before writing meshes ({proc.returncode}): {proc.communicate()[1][-2000:]}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail("timed out waiting for the meshes")


def _files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_sigint_while_meshes_are_written_leaves_nothing_and_says_so(files, tmp_path):
    out = tmp_path / "out"
    proc = _start(_args(files, out), tmp_path)
    _wait_for_mesh_temporary(proc, out)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if "interrupted" in line] == [
        "mvspin fit-rig: interrupted (SIGINT); partial outputs were removed"]
    assert _files_under(out) == []  # no mesh, no subject file, no temporary: the message is true


def test_a_killed_runs_mesh_temporary_is_removed_by_the_next_run(files, tmp_path):
    out = tmp_path / "out"
    proc = _start(_args(files, out), tmp_path)
    _wait_for_mesh_temporary(proc, out)
    proc.kill()  # SIGKILL: no handler runs, the temporaries stay
    proc.communicate(timeout=30)
    assert _mesh_temporaries(out)
    again = _start(_args(files, out), tmp_path)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert _mesh_temporaries(out) == []
    meshes = sorted(p.name for p in (out / "meshes").iterdir())
    assert meshes == [f"subject0_{t:06d}.obj" for t in range(FRAMES)]
