import contextlib
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from mvspin.atomic import (
    TEMPORARY_MARK,
    IncompleteWriteError,
    atomic_path,
    commit_temporary,
    remove_stale_temporaries,
    temporary_path_for,
    write_bytes_atomic,
)


def test_written_file_has_umask_permissions_and_no_leftovers(tmp_path):
    out = write_bytes_atomic(tmp_path / "sub" / "a.json", b"{}")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
    assert sorted(p.name for p in out.parent.iterdir()) == ["a.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "params.npz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.npz"]


def test_temporary_name_keeps_the_suffix(tmp_path):
    with atomic_path(tmp_path / "mesh.ply") as tmp:
        assert tmp.suffix == ".ply" and tmp.parent == tmp_path
        tmp.write_bytes(b"ply")
    assert (tmp_path / "mesh.ply").read_bytes() == b"ply"


def test_output_group_commits_all_or_nothing(tmp_path):
    from mvspin.atomic import OutputGroup

    with OutputGroup() as group:
        group.path(tmp_path / "x.npz").write_bytes(b"1")
        group.path(tmp_path / "x.obj").write_bytes(b"2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz", "x.obj"]
    assert group.committed == [tmp_path / "x.npz", tmp_path / "x.obj"]

    with pytest.raises(RuntimeError):
        with OutputGroup() as group:
            group.path(tmp_path / "y.npz").write_bytes(b"1")
            group.path(tmp_path / "y.obj")
            raise RuntimeError("mesh writer failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz", "x.obj"]  # no y.*, no temporaries

    # A commit that fails (a writer that wrote nothing) removes the siblings already committed.
    with pytest.raises(FileNotFoundError):
        with OutputGroup() as group:
            group.path(tmp_path / "z.npz").write_bytes(b"1")
            group.path(tmp_path / "z.obj").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz", "x.obj"]

    # Every file is checked before any is renamed: a failed check keeps the previous pair whole.
    from mvspin.atomic import IncompleteWriteError

    with pytest.raises(IncompleteWriteError, match="x.obj: the written file does not read back complete"):
        with OutputGroup() as group:
            group.path(tmp_path / "x.npz").write_bytes(b"new 1")
            group.path(tmp_path / "x.obj", verify=lambda tmp: tmp.read_bytes() == b"new 2").write_bytes(b"new")
    assert [(p.name, p.read_bytes()) for p in sorted(tmp_path.iterdir())] == [("x.npz", b"1"), ("x.obj", b"2")]


# -- complete files only: short writes, full disks ------------------------------------------


def _cube():
    v = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float64)
    f = np.array([[0, 1, 2], [1, 3, 2], [4, 6, 5], [5, 6, 7], [0, 4, 1], [1, 4, 5],
                  [2, 3, 6], [3, 7, 6], [0, 2, 4], [2, 6, 4], [1, 5, 3], [3, 5, 7]])
    return v, f


@pytest.mark.parametrize("suffix", [".obj", ".ply"])
def test_mesh_writer_that_reports_success_after_a_short_write_is_caught(tmp_path, monkeypatch, suffix):
    import open3d as o3d

    from mvspin.io_outputs import write_mesh

    real = o3d.io.write_triangle_mesh

    def short_write(name, mesh, **kw):  # what open3d does on a full disk: cut file, True
        assert real(name, mesh, **kw)
        data = open(name, "rb").read()
        open(name, "wb").write(data[: len(data) // 2])
        return True

    monkeypatch.setattr(o3d.io, "write_triangle_mesh", short_write)
    v, f = _cube()
    out = tmp_path / f"body{suffix}"
    with pytest.raises(IncompleteWriteError, match=str(out)):
        write_mesh(out, v, f)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(o3d.io, "write_triangle_mesh", real)
    write_mesh(out, v, f)
    assert len(o3d.io.read_triangle_mesh(str(out)).triangles) == 12


def test_empty_or_short_files_are_never_committed(tmp_path):
    tmp = temporary_path_for(tmp_path / "a.ply")  # a writer that wrote nothing (0 bytes)
    with pytest.raises(IncompleteWriteError, match="a.ply: the writer produced an empty file"):
        commit_temporary(tmp, tmp_path / "a.ply")
    tmp = temporary_path_for(tmp_path / "b.bin")
    tmp.write_bytes(b"12345")
    with pytest.raises(IncompleteWriteError, match="only 5 of 9 bytes"):
        commit_temporary(tmp, tmp_path / "b.bin", expected_size=9)
    tmp = temporary_path_for(tmp_path / "c.bin")
    tmp.write_bytes(b"x")
    with pytest.raises(IncompleteWriteError, match="does not read back"):
        commit_temporary(tmp, tmp_path / "c.bin", verify=lambda p: False)
    assert list(tmp_path.iterdir()) == []


def test_fsync_failure_is_a_failed_write(tmp_path, monkeypatch):
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(IncompleteWriteError, match="x.json: could not be written to the disk"):
        write_bytes_atomic(tmp_path / "x.json", b"{}")
    assert list(tmp_path.iterdir()) == []


def test_npz_writer_short_write_is_caught(tmp_path, monkeypatch):
    from mvspin import io_outputs

    real = np.savez

    def cut_savez(handle, **arrays):
        real(handle, **arrays)
        handle.truncate(handle.tell() // 2)

    monkeypatch.setattr(io_outputs.np, "savez", cut_savez)
    with pytest.raises(IncompleteWriteError, match="p.npz"):
        io_outputs.write_smpl_npz(tmp_path / "p.npz", global_orient=np.zeros(3), body_pose=np.zeros(69),
                                  betas=np.zeros(10), transl=np.zeros(3), model="m")
    assert list(tmp_path.iterdir()) == []


@contextlib.contextmanager
def _small_tmpfs(tmp_path, size="48k"):
    mnt = tmp_path / "full"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_leaves_nothing_half_written(tmp_path):
    from mvspin.io_outputs import VideoWriter, write_image, write_mesh

    rng = np.random.default_rng(0)
    with _small_tmpfs(tmp_path) as disk:
        v = rng.normal(size=(4000, 3))
        f = rng.integers(0, 4000, size=(8000, 3))
        with pytest.raises(OSError, match="mesh.obj"):
            write_mesh(disk / "mesh.obj", v, f)
        with pytest.raises(OSError, match="mesh.ply"):
            write_mesh(disk / "mesh.ply", v, f)
        with pytest.raises(OSError, match="noise.png"):
            write_image(disk / "noise.png", rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
        with pytest.raises(OSError, match="blob.bin"):
            write_bytes_atomic(disk / "blob.bin", rng.bytes(100_000))
        with pytest.raises(OSError, match="clip.avi"):
            with VideoWriter(disk / "clip.avi", fps=10) as video:
                for _ in range(20):
                    video.write(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
        assert sorted(p.name for p in disk.iterdir()) == []  # no final names, no temporaries
        write_bytes_atomic(disk / "small.json", b"{}")  # a write that fits still works
        assert (disk / "small.json").read_bytes() == b"{}"


# -- temporaries left by killed runs ------------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    from mvspin import atomic

    host = atomic._HOST
    dead = tmp_path / f".a.npz.{TEMPORARY_MARK}.{_dead_pid()}@{host}.k3j2.npz"
    live = tmp_path / f".b.npz.{TEMPORARY_MARK}.{os.getpid()}@{host}.x9a1.npz"
    foreign_old = tmp_path / f".c.ply.{TEMPORARY_MARK}.12@otherhost.aaaa.ply"
    foreign_new = tmp_path / f".d.ply.{TEMPORARY_MARK}.12@otherhost.bbbb.ply"
    not_ours = [tmp_path / ".e.npz.1234.tmp.npz", tmp_path / "f.mvspin-tmp.txt", tmp_path / "data.h5"]
    for p in (dead, live, foreign_old, foreign_new, *not_ours):
        p.write_bytes(b"x")
    day = 24 * 3600
    os.utime(foreign_old, (time.time() - 2 * day, time.time() - 2 * day))
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([dead, foreign_old])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (live, foreign_new, *not_ours))


def test_own_temporaries_go_on_an_interrupt_even_when_nothing_registered_them(tmp_path):
    # a signal between mkstemp and the OutputGroup's bookkeeping left an orphan that "partial
    # outputs were removed" did not remove: the interrupt's clean-up finds it by its pid
    from mvspin import atomic
    from mvspin.atomic import remove_own_temporaries, temporary_path_for

    orphan = temporary_path_for(tmp_path / "meshes" / "subject0_000000.obj")  # registers its folder
    other_process = orphan.parent / f".x.obj.{TEMPORARY_MARK}.{_dead_pid()}@{atomic._HOST}.abcd.obj"
    other_process.write_bytes(b"x")
    final = orphan.parent / "subject0_000001.obj"
    final.write_bytes(b"v 0 0 0\n")
    folder_tmp = orphan.parent / f".y.{TEMPORARY_MARK}.{os.getpid()}@{atomic._HOST}.efgh"
    folder_tmp.mkdir()  # a temporary folder may hold the only complete copy: left to atomic_folder
    removed = remove_own_temporaries()  # (other tests' folders are registered in this process too)
    assert [p for p in removed if p.parent == orphan.parent] == [orphan]
    assert sorted(p.name for p in orphan.parent.iterdir()) == sorted([other_process.name, final.name, folder_tmp.name])


def test_stale_temporary_folders_go_only_while_their_final_folder_exists(tmp_path):
    """A killed ``atomic_folder`` leaves a temporary folder: removed by the next folder write when
    the final folder exists; kept when it does not (the only complete copy, mid-replacement)."""
    from mvspin import atomic
    from mvspin.atomic import atomic_folder

    host, pid = atomic._HOST, _dead_pid()
    (tmp_path / "cam01").mkdir()
    garbage = tmp_path / f".cam01.{TEMPORARY_MARK}.{pid}@{host}.abcd"
    only_copy = tmp_path / f".cam02.{TEMPORARY_MARK}.{pid}@{host}.efgh"
    for folder in (garbage, only_copy):
        folder.mkdir()
        (folder / "cam_000000000000_keypoints.json").write_text("{}")
    with atomic_folder(tmp_path / "cam03") as tmp:
        (tmp / "x.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([only_copy.name, "cam01", "cam03"])
    assert (only_copy / "cam_000000000000_keypoints.json").read_text() == "{}"


def test_first_write_into_a_folder_cleans_it(tmp_path):
    from mvspin import atomic

    folder = tmp_path / "out"
    folder.mkdir()
    dead = folder / f".mesh.obj.{TEMPORARY_MARK}.{_dead_pid()}@{atomic._HOST}.zzzz.obj"
    dead.write_bytes(b"half a mesh")
    write_bytes_atomic(folder / "params.json", b"{}")
    assert sorted(p.name for p in folder.iterdir()) == ["params.json"]


def test_temporary_names_are_recognisable(tmp_path):
    tmp = temporary_path_for(tmp_path / "mesh.ply")
    assert tmp.name.startswith(f".mesh.ply.{TEMPORARY_MARK}.{os.getpid()}@") and tmp.suffix == ".ply"


def test_the_cli_removes_an_unregistered_temporary_on_an_interrupt(tmp_path, monkeypatch, capsys):
    import argparse

    from mvspin.atomic import temporary_path_for
    from mvspin.cli import main as cli_main

    made = []

    def interrupted_command(args):
        made.append(temporary_path_for(tmp_path / "out" / "mesh.obj"))  # created, never registered
        raise KeyboardInterrupt

    class Parser:
        def parse_args(self, argv):
            return argparse.Namespace(command="fit-rig", verbose=False, run=interrupted_command)

    monkeypatch.setattr(cli_main, "build_parser", lambda: Parser())
    assert cli_main.main(["fit-rig"]) == 130
    assert "interrupted (SIGINT); partial outputs were removed" in capsys.readouterr().err
    assert made and not made[0].exists() and list((tmp_path / "out").iterdir()) == []
