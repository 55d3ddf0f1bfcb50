"""Atomic file output: write under a temporary name beside the target, check, then rename.

Readers never see half a file, an interrupted job never leaves a truncated output, and a failed
write leaves the previous file (if any) untouched. Files get the usual permissions (``0o666``
minus the process umask), not ``mkstemp``'s private ``0o600``.

Before the rename every file is checked: its data is flushed to the disk (``fsync``), it must
not be empty, it must have the expected size when the writer knows it, and a writer may re-read
it (``verify``). Libraries that ignore a short write on a full disk (open3d's mesh writer,
OpenCV's video writer report success) are caught here: the result is an
:class:`IncompleteWriteError` naming the file, never a truncated file under the final name.

Temporary files are named ``.<final name>.mvspin-tmp.<pid>@<host>.<random><suffix>``. A process
killed outright (SIGKILL, power loss) cannot delete its temporaries; the next mvspin process that
writes into the same folder removes those whose process is gone
(:func:`remove_stale_temporaries`): only files with this exact pattern, only when the recorded
process no longer runs on this host (or, for another host's files, after a day untouched).
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

from mvspin.errors import IncompleteWriteError, MvspinError, OutputLocationError

__all__ = [
    "atomic_path",
    "write_bytes_atomic",
    "temporary_path_for",
    "commit_temporary",
    "OutputGroup",
    "IncompleteWriteError",
    "remove_stale_temporaries",
    "remove_own_temporaries",
    "TEMPORARY_MARK",
    "OutputLocationError",
    "check_output_location",
    "output_folder",
    "removed_if_unused",
    "atomic_folder",
]

TEMPORARY_MARK = "mvspin-tmp"
"""Part of every temporary file name (``.<name>.mvspin-tmp.<pid>@<host>.<random><suffix>``)."""

# Another host's temporaries (a shared file system) cannot be checked for a live process; they are
# taken as abandoned when nothing has touched them for this long.
FOREIGN_STALE_AFTER_S = 24 * 3600.0

Verify = Callable[[Path], object]
"""A re-reading check: called with the temporary file; raising or returning ``False`` rejects it."""


def location_error(message: str, what: str) -> OutputLocationError:
    """An :class:`OutputLocationError`; when ``what`` is a config field name (``"out"``) the
    error's ``field`` names it, so the command line shows the flag (``--out``)."""
    return OutputLocationError(message, field=what if what.isidentifier() else None)


# Below this much free space a job is refused before it starts: it could not write its outputs.
MIN_FREE_BYTES = 1 << 20


def check_output_location(path: str | os.PathLike, kind: str = "file", what: str = "output",
                          min_free_bytes: int = MIN_FREE_BYTES) -> Path:
    """Check, before any expensive work, that ``path`` can receive a ``kind`` (``"file"`` or
    ``"folder"``) of output; create the folder (or the file's folder); return ``path``.

    Checks that no file is in the way of a folder (and no folder in the way of a file), that a
    file can be created there (a probe file, removed at once; this also removes stale
    temporaries) and that the disk has at least ``min_free_bytes`` free.

    Raises:
        OutputLocationError: naming ``what`` (e.g. ``"--out"``) and the path.
    """
    if kind not in ("file", "folder"):
        raise ValueError(f"kind must be 'file' or 'folder', got {kind!r}")
    path = Path(path).expanduser()
    folder = path if kind == "folder" else path.parent
    if kind == "file" and path.is_dir():
        raise location_error(f"{what} {path}: is a directory (expected a file name)", what)
    if kind == "folder" and path.exists() and not path.is_dir():
        raise location_error(f"{what} {path}: a file is in the way (expected a folder)", what)
    for ancestor in (folder, *folder.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise location_error(f"{what} {path}: {ancestor} is a file, not a folder", what)
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temporary_path_for(folder / ".mvspin-write-probe")
        probe.unlink()
    except OSError as err:
        raise location_error(f"{what} {path}: cannot write there ({err.strerror or err})", what) from None
    try:
        stats = os.statvfs(folder)
        free = stats.f_bavail * stats.f_frsize
    except (OSError, AttributeError):
        free = None
    if free is not None and free < min_free_bytes:
        raise location_error(f"{what} {path}: the disk is full ({free} bytes free)", what)
    return path


@contextlib.contextmanager
def removed_if_unused(folder: Optional[str | os.PathLike]) -> Iterator[None]:
    """Within the block, ``folder`` and any missing parents may be created; if the block
    raises, those that did not exist before and are still empty are removed again, so a job
    refused after its output check (a bad input, an interruption) leaves nothing on disk.
    Folders that existed stay, as does anything with a file in it. ``None``: does nothing."""
    if folder is None:
        yield
        return
    path = Path(folder).expanduser().absolute()
    created = [p for p in (path, *path.parents) if not p.exists()]
    try:
        yield
    except BaseException:
        for made in created:  # deepest first; stop at the first one that holds something
            try:
                made.rmdir()
            except OSError:
                break
        raise


@contextlib.contextmanager
def output_folder(path: str | os.PathLike, what: str = "out") -> Iterator[Path]:
    """Check (and create) an output folder with :func:`check_output_location` for the duration
    of a job, removed again if the job fails before writing into it (:func:`removed_if_unused`).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> try:
        ...     with output_folder(root / "run"):
        ...         raise ValueError("bad input")
        ... except ValueError:
        ...     pass
        >>> (root / "run").exists()
        False
    """
    path = Path(path).expanduser()
    with removed_if_unused(path):
        check_output_location(path, kind="folder", what=what)
        yield path


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _default_mode()
_HOST = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname()) or "host"
_TMP_RE = re.compile(r"^\.(?P<name>.+)\." + re.escape(TEMPORARY_MARK) + r"\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9_-]+)\.")
_cleaned: set[str] = set()
_cleaned_lock = threading.Lock()


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return True
    return True


def _temporaries(folder: Path) -> list[tuple[os.DirEntry, re.Match]]:
    """The entries of ``folder`` named as mvspin temporaries, with their name's parts (none when
    the folder cannot be read)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return [(entry, match) for entry in entries if (match := _TMP_RE.match(entry.name)) is not None]


def remove_stale_temporaries(folder: str | os.PathLike, now: Optional[float] = None) -> list[Path]:
    """Delete mvspin temporaries in ``folder`` left by processes that no longer run.

    Only names of the form ``.<name>.mvspin-tmp.<pid>@<host>.<random><suffix>`` are considered;
    one is removed when ``<host>`` is this machine and process ``<pid>`` does not exist, or when
    ``<host>`` is another machine and the file is untouched for a day. Temporary *folders*
    (:func:`atomic_folder`) are removed by the same rule, but only while ``<name>`` exists: a
    process killed between the two renames of a folder replacement leaves the only complete copy
    under a temporary name, and that one is kept. Returns what was removed.
    """
    import shutil

    folder = Path(folder)
    now = time.time() if now is None else now
    removed: list[Path] = []
    for entry, match in _temporaries(folder):
        try:
            is_folder = entry.is_dir(follow_symlinks=False)
            if not (is_folder or entry.is_file(follow_symlinks=False)):
                continue
            if is_folder and not (folder / match["name"]).exists():
                continue
            if match["host"] == _HOST:
                stale = not _process_alive(int(match["pid"]))
            else:
                stale = now - entry.stat(follow_symlinks=False).st_mtime > FOREIGN_STALE_AFTER_S
            if stale:
                if is_folder:
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:  # vanished meanwhile, or not ours to delete
            continue
    return removed


def remove_own_temporaries() -> list[Path]:
    """Delete the temporary files of this process in every folder it made one in; returns them.

    For an interrupt's clean-up: a signal can land between a temporary's creation and the code
    that registers it for deletion (``tempfile.mkstemp`` has returned, the name is not yet in an
    :class:`OutputGroup`), and then nothing else would remove it. Temporary folders are left to
    :func:`atomic_folder` (mid-replacement one may hold the only complete copy)."""
    with _cleaned_lock:
        folders = sorted(_cleaned)
    pid, removed = str(os.getpid()), []
    for folder in folders:
        for entry, match in _temporaries(Path(folder)):
            if match["pid"] != pid or match["host"] != _HOST:
                continue
            try:
                if entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except OSError:  # vanished meanwhile
                continue
    return removed


def _clean_once(folder: Path) -> None:
    key = str(folder.resolve())
    with _cleaned_lock:
        if key in _cleaned:
            return
        _cleaned.add(key)
    remove_stale_temporaries(folder)


def temporary_path_for(path: str | os.PathLike) -> Path:
    """A fresh, empty file beside ``path`` with the same suffix (writers that pick the format by
    suffix keep working). Pair with :func:`commit_temporary`; prefer :func:`atomic_path`.

    The first call for a folder also removes stale temporaries there
    (:func:`remove_stale_temporaries`)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(20, "not a directory (a file is in the way)", str(path.parent)) from None
    if path.is_dir():
        raise IsADirectoryError(21, "a directory is in the way of the output file", str(path))
    _clean_once(path.parent)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{TEMPORARY_MARK}.{os.getpid()}@{_HOST}.",
                                suffix=path.suffix)
    os.close(fd)
    return Path(name)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a directory; the file itself is synced
        pass
    finally:
        os.close(fd)


def check_complete(tmp: Path, path: str | os.PathLike, *, fsync: bool = True,
                   expected_size: Optional[int] = None, verify: Optional[Verify] = None,
                   allow_empty: bool = False) -> None:
    """Raise :class:`IncompleteWriteError` unless ``tmp`` (to become ``path``) is complete on disk.

    Flushes it to the disk (``fsync``; a full disk can fail only here), then requires a
    non-empty file, ``expected_size`` bytes when given, and ``verify(tmp)`` not to fail.
    """
    if not tmp.exists():
        raise FileNotFoundError(f"nothing was written for {path}")
    if fsync:
        try:
            _fsync_file(tmp)
        except OSError as err:
            raise IncompleteWriteError(f"{path}: could not be written to the disk ({err.strerror or err})") from err
    size = tmp.stat().st_size
    if size == 0 and not allow_empty:
        raise IncompleteWriteError(f"{path}: the writer produced an empty file (is the disk full?)")
    if expected_size is not None and size != expected_size:
        raise IncompleteWriteError(f"{path}: only {size} of {expected_size} bytes were written (is the disk full?)")
    if verify is not None:
        try:
            ok = verify(tmp)
        except Exception as err:  # the re-read failed: the file is not what was written
            raise IncompleteWriteError(f"{path}: the written file does not read back ({err}); "
                                       "is the disk full?") from err
        if ok is False:
            raise IncompleteWriteError(f"{path}: the written file does not read back complete (is the disk full?)")


def commit_temporary(tmp: Path, path: str | os.PathLike, fsync: bool = True, *,
                     expected_size: Optional[int] = None, verify: Optional[Verify] = None,
                     allow_empty: bool = False) -> Path:
    """Check ``tmp`` (:func:`check_complete`), give it normal permissions and rename it onto
    ``path``; ``tmp`` is deleted when anything fails.

    Raises:
        IncompleteWriteError: the file is empty, short, or does not read back (names ``path``).
    """
    try:
        check_complete(tmp, path, fsync=fsync, expected_size=expected_size, verify=verify,
                       allow_empty=allow_empty)
        os.chmod(tmp, _MODE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_folder(Path(path).parent)
    return Path(path)


def _name_the_file(err: OSError, path: str | os.PathLike) -> OSError:
    """``write()`` errors (ENOSPC, EIO) carry no file name: give them the final one."""
    if err.filename is None and err.errno is not None and not isinstance(err, MvspinError):
        named = type(err)(err.errno, err.strerror or str(err), str(path))
        named.__cause__ = err
        return named
    return err


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = True, *, expected_size: Optional[int] = None,
                verify: Optional[Verify] = None, allow_empty: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so format-by-suffix writers work);
    when the block succeeds the file is checked (:func:`check_complete`) and renamed onto
    ``path``, when it raises or the check fails it is deleted.

    Example:
        >>> with atomic_path(out / "mesh.ply", verify=reads_back) as tmp:   # doctest: +SKIP
        ...     open3d.io.write_triangle_mesh(str(tmp), mesh)
    """
    tmp = temporary_path_for(path)
    try:
        yield tmp
    except OSError as err:
        tmp.unlink(missing_ok=True)
        named = _name_the_file(err, path)
        if named is err:
            raise
        raise named from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    commit_temporary(tmp, path, fsync=fsync, expected_size=expected_size, verify=verify,
                     allow_empty=allow_empty)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (checked to have ``len(data)`` bytes on disk)."""
    data = bytes(data)
    with atomic_path(path, expected_size=len(data), allow_empty=not data) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


class OutputGroup:
    """Files that belong together (one input's ``.npz``, mesh and overlay; a camera's
    ``intri.yml`` and ``extri.yml``) appear together or not at all.

    Each :meth:`path` call gives a temporary path beside its final name; when the ``with`` block
    succeeds every temporary is checked (:func:`check_complete`) and only when all passed are
    they renamed, in order, so a file that fails its check leaves the previous files of the whole
    group as they were. When the block raises, a check fails or a rename fails, every temporary
    and every file already renamed by this group is removed, so no lone ``.npz`` is left next to a
    missing mesh.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> with OutputGroup() as group:
        ...     group.path(out / "a.txt").write_text("a")
        ...     group.path(out / "b.txt").write_text("b")
        1
        1
        >>> sorted(p.name for p in out.iterdir())
        ['a.txt', 'b.txt']
    """

    def __init__(self, fsync: bool = True) -> None:
        self._fsync = fsync
        self._pending: list[tuple[Path, Path, Optional[Verify]]] = []
        self.committed: list[Path] = []
        """Final paths written by the group (after a successful block)."""

    def path(self, final: str | os.PathLike, verify: Optional[Verify] = None) -> Path:
        """A temporary path (same suffix) that becomes ``final`` when the group commits;
        ``verify`` re-reads it first (see :func:`check_complete`)."""
        tmp = temporary_path_for(final)
        self._pending.append((tmp, Path(final), verify))
        return tmp

    def __enter__(self) -> "OutputGroup":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                for tmp, final, verify in self._pending:
                    check_complete(tmp, final, fsync=self._fsync, verify=verify)
                for tmp, final, _ in self._pending:
                    os.chmod(tmp, _MODE)
                    os.replace(tmp, final)
                    self.committed.append(final)
                if self._fsync:
                    for folder in {final.parent for final in self.committed}:
                        _fsync_folder(folder)
                return
            except BaseException:
                self._discard()
                raise
        self._discard()

    def _discard(self) -> None:
        for tmp, _, _ in self._pending:
            tmp.unlink(missing_ok=True)
        for final in self.committed:
            final.unlink(missing_ok=True)
        self.committed = []


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; when the block succeeds it replaces ``path`` (a
    folder of many files, e.g. one camera's per-frame keypoint files, appears whole or not at
    all), when it raises the temporary folder is deleted and ``path`` is left as it was.

    The replacement of an existing folder is two renames (old aside, new in) and a delete: a
    crash between them leaves the old folder under a temporary name, never a partial new one.
    """
    import shutil

    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not final.is_dir():
        raise NotADirectoryError(20, "a file is in the way of the output folder", str(final))
    _clean_once(final.parent)
    prefix = f".{final.name}.{TEMPORARY_MARK}.{os.getpid()}@{_HOST}."
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=prefix))
    os.chmod(tmp, _MODE | ((_MODE & 0o444) >> 2))  # mkdtemp's 0o700 -> the usual folder mode
    try:
        yield tmp
        if fsync:
            for entry in tmp.iterdir():
                if entry.is_file():
                    _fsync_file(entry)
            _fsync_folder(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(dir=final.parent, prefix=prefix))
        os.rmdir(old)
        os.replace(final, old)
    os.replace(tmp, final)
    if fsync:
        _fsync_folder(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
