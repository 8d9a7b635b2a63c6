"""Writing files and folders whole: each is written beside its destination, flushed to the disk, and
renamed into place, so that a reader sees the old version or the new one, never half of one.

A rename alone makes the swap atomic for a process that is killed; the fsyncs make it hold through
a power cut too (as far as the drive honours them), where the rename could otherwise reach the
disk before the bytes it names. The checkpoints, the training states, the student copy and the
corpus are all written this way. Torch-free, like the student copy and the corpus that use it.

One more helper for the command line: `in_course_folder`, for a relative path given from the wrong
folder (a terminal opened in notebooks/, say).
"""

from __future__ import annotations

import errno
import glob
import os
import re
import shutil
import tempfile
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .env import REPO

_held: dict[Path, int] = {}  # folders this process holds the lock of, and how many times over


def fsync_path(path: Path) -> None:
    """Flush one file, or a folder's list of names (e.g. after a rename in it), to the disk."""
    if os.name != "posix":  # Windows opens no folder to sync, and syncs a file only through a writable handle
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:
        # Some file systems (FUSE and network mounts) cannot sync a folder: nothing more can be done there.
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


def sync_folder(folder: Path) -> None:
    """Flush a finished folder's files and its list of names to the disk, before it is renamed into place."""
    for f in folder.iterdir():
        if f.is_file() and not f.is_symlink():
            fsync_path(f)
    fsync_path(folder)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def share(folder: Path) -> None:
    """Give a finished folder and its files the permissions the umask allows, as a plain mkdir and open would."""
    # mkdtemp makes the folder private (0700), and safetensors its files (0600): a checkpoint gets the usual
    # permissions, so that others on a shared machine (a class's students) can read it, unless the umask says not.
    umask = os.umask(0)
    os.umask(umask)
    for f in folder.iterdir():
        os.chmod(f, 0o666 & ~umask)
    os.chmod(folder, 0o777 & ~umask)


def replace_folder(new: Path, path: Path) -> None:
    """Move the finished folder ``new`` (beside ``path``) to ``path``, in place of whatever is there.

    What was at ``path`` (a folder, a file or a link) is moved aside as ``.NAME.old-XXXXXXXX``, a
    name of its own so that a copy left by an earlier interruption never blocks this one; it is put
    back if ``new`` cannot take its place, and removed once ``new`` has. A process killed between
    the two renames leaves only that copy aside: `restore_folder` puts it back.
    """
    sync_folder(new)
    old: Path | None = None
    if path.exists() or path.is_symlink():
        old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(path, old)
        try:
            os.replace(new, path)
        except BaseException:
            os.replace(old, path)  # the previous version goes back: nothing is lost
            raise
    else:
        os.replace(new, path)
    try:
        fsync_path(path.parent)  # the rename itself
    finally:
        if old is not None:  # the new folder is in place: what is left is only the old one's disk space
            # Renamed first: a deletion cut short must not leave a part of it under the name of a
            # complete copy set aside, which restore_folder would put back.
            trash = old.with_name(old.name.replace(".old-", ".del-", 1))
            os.replace(old, trash)
            _remove(trash)


def away_from_here(path: str | Path, what: str, example: str) -> Path:
    """``path`` made absolute, refused if it is the current folder or holds it: a write that replaces its folder as
    a whole would pull it out from under the process (and "." has no name to write beside)."""
    path = Path(path).expanduser().absolute()
    # ".." as the file system takes it (beside a link's target), and a name to write beside: "out/.." has none.
    path = path.resolve() if path.name == ".." else path.parent.resolve() / path.name
    try:
        here = Path.cwd()
    except FileNotFoundError:  # the current folder was deleted: the path is absolute, and cannot be it
        return path
    if path.resolve() in (here, *here.parents):
        raise ValueError(f"{what}{path} is the folder you are in (or holds it), and a write replaces its folder as a "
                         f"whole: name a new folder for it, such as {example!r}")
    return path


# The mark of the course's temporary names beside a destination, .NAME.tmp-XXXXXXXX: none a person would choose
# (.student.original is someone's backup), so what a killed write leaves can be told apart and removed.
TEMPORARY = "tmp-"


def temporary_folder(path: Path) -> Path:
    """A new, private folder beside ``path`` to write its next version in (renamed into place when done)."""
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.{TEMPORARY}", dir=path.parent))


def set_aside(path: Path) -> list[Path]:
    """The copies of ``path`` that cut-short replacements set aside (``.NAME.old-XXXXXXXX``), the last one set aside last."""
    # Only replace_folder's own names: a learner's ".state.old-before-lr-change" is a backup, never removed or put back.
    pattern = re.compile(rf"\.{re.escape(path.name)}\.old-[0-9a-f]{{8}}")
    found = [p for p in path.parent.glob(f".{glob.escape(path.name)}.old-*") if pattern.fullmatch(p.name)]
    return sorted(found, key=lambda p: p.lstat().st_ctime_ns)


def leftovers(path: Path) -> list[Path]:
    """What writes of ``path`` that were killed mid-way left beside it: their temporary folders or files
    (``.NAME.tmp-`` and tempfile's eight characters), old copies whose deletion was cut short (``.NAME.del-*``)
    and, once ``path`` is in place, the copies set aside."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.({TEMPORARY}[a-z0-9_]{{8}}|del-[0-9a-f]{{8}})")  # del-: cut short
    found = [p for p in path.parent.glob(f".{glob.escape(path.name)}.*") if pattern.fullmatch(p.name)]
    if path.exists():
        found += set_aside(path)
    return sorted(found)


def remove_leftovers(path: Path) -> list[Path]:
    """Remove what `leftovers` finds beside ``path`` (the disk space of killed writes); returns what it removed.

    Only for a destination that no other process is writing at the same time.
    """
    found = leftovers(path)
    for p in found:
        _remove(p)
    return found


def restore_folder(path: Path) -> bool:
    """Undo a `replace_folder` cut short between its two renames: if ``path`` is missing, its copy set aside goes back.

    Returns whether a copy was put back. With several set aside (interruptions in a row), the
    one set aside last is the newest version.
    """
    if path.exists() or path.is_symlink():
        return False
    aside = set_aside(path)
    if not aside:
        return False
    os.replace(aside[-1], path)
    fsync_path(path.parent)
    return True


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to the file ``path`` whole: the old contents stay until the new ones are on the disk."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{TEMPORARY}", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        fsync_path(Path(tmp))
        os.chmod(tmp, mode)  # mkstemp makes files private
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    fsync_path(path.parent)


def write_problem(folder: Path) -> str | None:
    """Why files cannot be written into ``folder`` (made if missing), or None: the first part of it that exists decides."""
    folder = Path(folder).absolute()
    for existing in (folder, *folder.parents):
        try:
            if existing.exists():
                break
        except OSError as e:  # a folder on the way that may not be entered (HOME=/root for another user)
            return f"{existing} cannot be reached ({e.strerror or e})"
    if not existing.is_dir():
        return f"{existing} is a file, so {folder} cannot be made"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is read-only for you"
    return None


def safetensors_path(path: Path, what: str = "") -> str:
    """``path`` as safetensors opens it, or a ValueError: safetensors refuses a path whose bytes are not UTF-8."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        # A folder named under another encoding (an old zip, a Latin-1 machine), or any accent under a
        # locale that is not UTF-8: safetensors writes such a file but never opens it again.
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise ValueError(f"{what}{shown}: safetensors can only open paths that are UTF-8 text, and this one is not "
                         "(a folder named in another encoding, or a locale that is not UTF-8). Rename the folder "
                         "with plain letters, or run under a UTF-8 locale (LANG=C.UTF-8)") from None
    return str(path)


def save_tensors(tensors: dict, file: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors' save_file, a write that fails (a full disk) raised as the OSError it is.

    safetensors reports a full disk as its own SafetensorError ("I/O error: No space left on device
    (os error 28)"), which callers that handle OSError would let through as a traceback.
    """
    from safetensors.torch import save_file

    name = safetensors_path(file)  # before writing: a file it would write, it could not read back
    try:
        save_file(tensors, name, metadata=metadata)
    except Exception as e:
        code = re.search(r"os error (\d+)", str(e))
        if type(e).__name__ != "SafetensorError" or code is None:
            raise
        raise OSError(int(code.group(1)), f"{os.strerror(int(code.group(1)))} (writing {file.name})") from e


# A full disk, or a full quota (a shared JupyterHub's usual limit): the same advice, room to free.
NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


def is_no_room(error: BaseException) -> bool:
    """True for an OSError that says the disk, or this account's quota on it, is full."""
    return isinstance(error, OSError) and error.errno in NO_ROOM


class DiskFull(OSError):
    """A write of ``destination`` that filled the disk (or the quota: ``quota``), or (``before``) that was
    measured not to fit; nothing there was changed, the partial files are gone."""

    def __init__(self, destination: Path, needed: int, before: bool = False, quota: bool = False) -> None:
        from .memory import disk_free, format_bytes

        self.destination, self.needed, self.before, self.quota = destination, needed, before, quota
        if quota:  # the disk's free space says nothing of the account's quota
            super().__init__(errno.EDQUOT, f"could not write {destination} (this account's disk quota is used up): "
                                           f"nothing there was changed. It needs {format_bytes(needed)}: free some "
                                           "space in your account (du -sh ~/* shows what takes it), then run again")
            return
        # Measured now, once the partial files are removed: what a rerun would find.
        free = disk_free(destination.parent)
        # A temporary folder's disk (a shared /tmp, a small tmpfs) is not one a learner can free: say how to move it.
        # TMPDIR moves only the folders made as temporary ones (notebook 13's); one given by name (train --out
        # /tmp/run) is moved by naming another.
        temporary = Path(tempfile.gettempdir()).resolve() in Path(destination).resolve().parents
        elsewhere = (f". It is in the temporary folder {tempfile.gettempdir()}: give a folder on a disk with room "
                     "instead where you chose this one (train --out), and for the temporary folders a notebook "
                     "makes, make a folder on such a disk and set TMPDIR to it before starting Python or JupyterLab "
                     "(mkdir -p ~/tmp, then TMPDIR=~/tmp: a TMPDIR that does not exist is ignored)"
                     if temporary else "")
        what = (f"not enough room on the disk to write {destination}: nothing was written" if before else
                f"could not write {destination} (the disk is full): nothing there was changed")
        super().__init__(errno.ENOSPC, f"{what}. It needs {format_bytes(needed)}, "
                                       f"and {format_bytes(free)} are free on that disk: free some space, then run "
                                       f"again{elsewhere}")

    def __reduce__(self):  # noqa: ANN204 (picklable, as OSError's own arguments are not these)
        return type(self), (self.destination, self.needed, self.before, self.quota)


def in_course_folder(path: str | Path) -> str:
    """For a relative ``path`` missing here but present in the course's folder: a sentence saying so; else ''."""
    path = Path(path)
    if path.is_absolute() or path.exists() or not (REPO / path).exists():
        return ""
    return (f"there is no {str(path)!r} in {Path.cwd()} (a command reads paths from the folder it runs in), but the "
            f"course's folder has one: pass {REPO / path}, or run the command from {REPO}")


def crlf_hint(data: bytes) -> str:
    """For a checked data file whose bytes differ: a sentence when git gave its lines CRLF endings; else ''."""
    if b"\r\n" not in data:  # the course's data files hold none
        return ""
    return (" Its lines end in CRLF: git converted them when it checked the file out (core.autocrlf, the "
            "default of Git for Windows), and git checkout alone leaves them so. Delete the file, then run "
            "`git checkout -- data/` (after `git pull`, if the course's .gitattributes is missing: it keeps data/ "
            "as it is).")


@contextmanager
def hold(folder: Path, what: str) -> Iterator[None]:
    """Hold ``folder``'s lock while ``what`` writes into it: a second process is refused, not interleaved.

    The lock is the operating system's (flock on the folder itself: no file is left in it), so a
    process that dies lets go of it and a killed run never leaves the folder locked. Held again by
    the same process, it simply nests. Where there is no flock (Windows), or the file system takes
    none on a folder (NFS), nothing is locked (on NFS, with a warning).
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    folder = Path(folder).resolve()
    if folder in _held:
        _held[folder] += 1
        try:
            yield
        finally:
            _held[folder] -= 1
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FileExistsError(errno.EBUSY, f"{folder} is in use by another {what}, still going: wait for it to "
                                               "end, or choose another folder") from None
        except OSError as e:  # NFS: a folder cannot take an exclusive lock there (EBADF), nor some file systems
            warnings.warn(f"{folder} cannot be locked on its file system ({e.strerror}): the {what} goes on, but "
                          "nothing stops a second one from writing there at the same time", stacklevel=3)
        _held[folder] = 1
        try:
            yield
        finally:
            del _held[folder]
    finally:
        os.close(fd)  # closing lets go of the lock
