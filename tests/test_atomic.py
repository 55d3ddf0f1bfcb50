import os
import stat

import pytest

from mvspin.atomic import atomic_path, write_bytes_atomic


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
