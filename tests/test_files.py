"""gptoss_edu.files: folders and files replaced whole (the checkpoint, train, student and corpus
tests check each user of it; these check what only the helpers themselves decide)."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from gptoss_edu.files import remove_leftovers, replace_folder, restore_folder, write_file


def folder(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "data.txt").write_text(text)
    return path


def test_a_replacement_cut_between_its_renames_is_undone(tmp_path):
    target = folder(tmp_path / "state", "step 1")
    assert not restore_folder(target)  # present: nothing to undo
    os.replace(target, tmp_path / ".state.old-0123abcd")  # as the first rename leaves it
    assert restore_folder(target)
    assert (target / "data.txt").read_text() == "step 1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]
    assert not restore_folder(tmp_path / "never-written")


def test_of_several_copies_set_aside_the_last_one_comes_back(tmp_path):
    folder(tmp_path / ".state.old-ffffffff", "step 1")
    time.sleep(0.01)  # ctime has nanoseconds, but not every file system fills them in
    os.replace(folder(tmp_path / "x", "step 2"), tmp_path / ".state.old-00000000")
    assert restore_folder(tmp_path / "state")
    assert (tmp_path / "state" / "data.txt").read_text() == "step 2"


def test_a_name_with_glob_characters_finds_only_its_own_copy(tmp_path):
    folder(tmp_path / ".run[1].old-0123abcd", "mine")
    folder(tmp_path / ".run1.old-0123abcd", "another run's")
    assert restore_folder(tmp_path / "run[1]")
    assert (tmp_path / "run[1]" / "data.txt").read_text() == "mine"


@pytest.mark.parametrize("kind", ["folder", "file", "link"])
def test_whatever_was_at_the_path_is_replaced_and_nothing_is_left_beside_it(tmp_path, kind):
    target = tmp_path / "out"
    if kind == "folder":
        folder(target, "old")
    elif kind == "file":
        target.write_text("old")
    else:
        target.symlink_to(folder(tmp_path / "real", "pointed to"))
    replace_folder(folder(tmp_path / ".out.new", "new"), target)
    assert target.is_dir() and not target.is_symlink() and (target / "data.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] + (["real"] if kind == "link" else [])
    if kind == "link":
        assert (tmp_path / "real" / "data.txt").read_text() == "pointed to"  # a link goes, not what it named


def test_a_file_is_replaced_whole_or_not_at_all(tmp_path):
    path = tmp_path / "split.json"
    write_file(path, b"first")
    assert path.read_bytes() == b"first" and path.stat().st_mode & 0o777 == 0o644
    with pytest.raises(TypeError):
        write_file(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["split.json"]  # no temporary file left


@pytest.mark.skipif(os.name != "posix", reason="folders are fsynced on POSIX systems only")
def test_disk_errors_leave_one_whole_version_in_place(tmp_path, failing_fsync):
    target = folder(tmp_path / "state", "step 1")
    # A file system that cannot sync folders (EINVAL, as FUSE and network mounts answer): done all the same.
    failing_fsync(errno.EINVAL)
    replace_folder(folder(tmp_path / ".state.a", "step 2"), target)
    assert (target / "data.txt").read_text() == "step 2"
    # A disk error before the rename: reported, and the version in place is untouched.
    failing_fsync(errno.EIO)
    with pytest.raises(OSError, match=os.strerror(errno.EIO)):
        replace_folder(folder(tmp_path / ".state.b", "step 3"), target)
    assert (target / "data.txt").read_text() == "step 2"
    # A disk error flushing the rename: reported; the new version is in place and no copy of the old is left.
    failing_fsync(errno.EIO, only=tmp_path)
    with pytest.raises(OSError, match=os.strerror(errno.EIO)):
        replace_folder(folder(tmp_path / ".state.c", "step 4"), target)
    assert (target / "data.txt").read_text() == "step 4"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".state.b", "state"]  # .b: its caller removes it


# ---- found by mutation testing: descriptors closed, a restore flushed, a link left alone ---------


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open descriptors in /proc/self/fd")
def test_syncing_leaves_no_file_descriptor_open(tmp_path):
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    target = tmp_path / "state"
    write_file(tmp_path / "f", b"warm-up")
    before = open_fds()
    for i in range(5):
        write_file(tmp_path / "f", b"x" * i)
        replace_folder(folder(tmp_path / f".state.new{i}", str(i)), target)
    assert open_fds() == before


@pytest.mark.skipif(os.name != "posix", reason="folders are fsynced on POSIX systems only")
def test_a_restored_copy_is_on_the_disk(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append(os.fstat(fd).st_ino)
        real(fd)

    folder(tmp_path / ".state.old-0123abcd", "step 1")
    monkeypatch.setattr(os, "fsync", fsync)
    assert restore_folder(tmp_path / "state")
    assert tmp_path.stat().st_ino in synced  # the rename back is flushed, as replace_folder's are


def test_a_link_at_the_path_is_not_replaced_by_a_copy_set_aside(tmp_path):
    target = tmp_path / "state"
    target.symlink_to(tmp_path / "elsewhere")  # dangling: exists() is False, but something is there
    folder(tmp_path / ".state.old-0123abcd", "step 1")
    assert not restore_folder(target)
    assert target.is_symlink()


def test_leftovers_are_the_temporary_names_of_killed_writes_and_nothing_of_the_users(tmp_path):
    """A run deletes what remove_leftovers finds: a user's own '.state.something' beside it must never be among it."""
    target = folder(tmp_path / "state", "step 2")
    killed = [tmp_path / name for name in (".state.tmp-hrlqefjb", ".state.tmp-a1b2c3_d", ".state.old-3ff9ab5e")]
    for path in killed:
        path.mkdir()
    mine = [tmp_path / name for name in (".state.notes.md", ".state.my_backup_of_step_1", ".state.backup01.tar",
                                         ".state.notes", "state.tmp-hrlqefjb", ".other.tmp-hrlqefjb", ".state.hrlqefjb", ".state.original")]
    for path in mine:
        path.write_text("mine")
    assert remove_leftovers(target) == sorted(killed)
    assert not any(path.exists() for path in killed)
    assert all(path.read_text() == "mine" for path in mine)
    assert (target / "data.txt").read_text() == "step 2"


def test_a_copy_set_aside_while_its_folder_is_missing_is_no_leftover(tmp_path):
    """Killed between replace_folder's two renames, the copy set aside is the only one: restore_folder needs it."""
    folder(tmp_path / ".state.old-0123abcd", "step 1")
    assert remove_leftovers(tmp_path / "state") == []
    assert restore_folder(tmp_path / "state")
    assert (tmp_path / "state" / "data.txt").read_text() == "step 1"


def test_a_relative_path_that_exists_here_needs_no_word_about_the_course_folder(tmp_path, monkeypatch):
    from gptoss_edu.files import REPO, in_course_folder

    monkeypatch.chdir(REPO)
    assert in_course_folder("README.md") == ""  # found where the command runs: nothing to say
    monkeypatch.chdir(tmp_path)
    assert in_course_folder("README.md").startswith(f"there is no 'README.md' in {tmp_path}")
    assert in_course_folder(REPO / "README.md") == "" and in_course_folder("no-such-file") == ""


def test_a_full_temporary_disk_says_how_to_move_temporary_files(tmp_path, monkeypatch):
    """A shared /tmp or a small tmpfs is no disk a learner can free (notebook 13 checkpoints into one)."""
    import tempfile

    from gptoss_edu.files import DiskFull

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    inside = str(DiskFull(tmp_path / "tmp" / "run" / "state", 83 * 2**20))
    # TMPDIR moves only what is made as temporary: a folder given by name (train --out /tmp/run) is moved by naming
    # another, which the advice once left out.
    assert inside.endswith(f"free some space, then run again. It is in the temporary folder {tmp_path / 'tmp'}: give "
                           "a folder on a disk with room instead where you chose this one (train --out), and for the "
                           "temporary folders a notebook makes, make a folder on such a disk and set TMPDIR to it "
                           "before starting Python or JupyterLab (mkdir -p ~/tmp, then TMPDIR=~/tmp: a TMPDIR that "
                           "does not exist is ignored)"), inside
    outside = str(DiskFull(tmp_path / "home" / "run", 83 * 2**20))
    assert outside.endswith("free some space, then run again") and "TMPDIR" not in outside


def test_a_folder_whose_file_system_takes_no_lock_is_written_unlocked_with_a_warning(tmp_path, monkeypatch):
    """On NFS an exclusive flock on a folder fails with EBADF: every training run was refused with it."""
    import errno
    import fcntl

    from gptoss_edu.files import hold

    def nfs(fd, op):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(fcntl, "flock", nfs)
    ran = []
    with pytest.warns(UserWarning, match=r"cannot be locked on its file system \(Bad file descriptor\): the training "
                                         "run goes on"):
        with hold(tmp_path / "run", "training run"):
            ran.append(True)
    assert ran == [True]


def test_an_old_copy_whose_deletion_was_cut_short_is_never_put_back(tmp_path, monkeypatch):
    """It kept the name of a complete copy set aside: deleted by hand afterwards, the folder came back
    half-deleted from it (and a write without overwrite=True was then refused)."""
    import gptoss_edu.files as files

    target = folder(tmp_path / "ck", "old")
    (target / "more.txt").write_text("part of the old copy")
    real_remove = files._remove

    def cut_short(path):  # Ctrl-C half-way through deleting the old copy
        (path / "more.txt").unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "_remove", cut_short)
    with pytest.raises(KeyboardInterrupt):
        replace_folder(folder(tmp_path / ".ck.newcopy1", "new"), target)
    monkeypatch.setattr(files, "_remove", real_remove)
    assert (target / "data.txt").read_text() == "new"
    left = [p.name for p in tmp_path.iterdir() if p.name != "ck"]
    assert len(left) == 1 and left[0].startswith(".ck.del-"), left
    import shutil

    shutil.rmtree(target)  # the learner deletes the checkpoint on purpose
    assert not restore_folder(target) and not target.exists()
    assert [p.name for p in remove_leftovers(target)] == left and sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("refused", [os.W_OK, os.X_OK])
def test_a_folder_that_may_not_be_written_or_entered_is_read_only_for_you(tmp_path, monkeypatch, refused):
    """Writing a file into a folder takes both rights: one without x (chmod a-x) refuses it as one without w does.
    The tests run as root, who has both everywhere: os.access answers as another user would."""
    from gptoss_edu.files import write_problem

    assert write_problem(tmp_path / "new" / "deeper") is None
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: not mode & refused and real(path, mode))
    assert write_problem(tmp_path / "new" / "deeper") == f"{tmp_path} is read-only for you"


# ---- found by mutation testing (review B): a dangling link, a failed swap, syncs, DiskFull, the lock --------


def test_a_dangling_link_at_the_path_is_replaced_too(tmp_path):
    """exists() is False for it, and a folder cannot be renamed onto a link (ENOTDIR): it is set aside first."""
    target = tmp_path / "out"
    target.symlink_to(tmp_path / "gone")
    replace_folder(folder(tmp_path / ".out.new", "new"), target)
    assert not target.is_symlink() and (target / "data.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_swap_that_fails_puts_the_old_version_back(tmp_path, monkeypatch):
    target = folder(tmp_path / "state", "step 1")
    real = os.replace
    calls = []

    def second_fails(src, dst):
        calls.append(src)
        if len(calls) == 2:  # the new folder into place
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(src, dst)

    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(OSError, match=os.strerror(errno.EIO)):
        replace_folder(folder(tmp_path / ".state.new", "step 2"), target)
    monkeypatch.setattr(os, "replace", real)
    assert (target / "data.txt").read_text() == "step 1"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".state.new", "state"]  # no copy left aside


@pytest.mark.skipif(os.name != "posix", reason="files and folders are fsynced on POSIX systems only")
def test_a_written_file_and_its_rename_are_on_the_disk(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.fstat(fd).st_ino) or real(fd))
    write_file(tmp_path / "f", b"data")
    assert (tmp_path / "f").stat().st_ino in synced  # the bytes, before the rename (the inode stays the same)
    assert tmp_path.stat().st_ino in synced  # and the rename


def test_a_path_ending_in_dot_dot_is_the_folder_it_names(tmp_path, monkeypatch):
    from gptoss_edu.files import away_from_here

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert away_from_here(tmp_path / "a" / "b" / "..", "", "x") == tmp_path / "a"  # a name to write beside


def test_a_temporary_folder_is_a_leftover_once_its_write_is_killed(tmp_path):
    from gptoss_edu.files import leftovers, temporary_folder

    target = folder(tmp_path / "state", "step 1")
    tmp = temporary_folder(target)
    assert tmp.name.startswith(".") and leftovers(target) == [tmp]  # hidden, and found to remove


def test_names_like_the_temporary_ones_but_not_theirs_are_the_users(tmp_path):
    target = folder(tmp_path / "state", "step 1")
    mine = [tmp_path / name for name in (".state.tmp-mine", ".state.tmp-hrlqefjb.bak", ".state.del-0123abcd.notes",
                                         ".state.old-before-lr-change", ".state.old-0123abcd.bak")]
    for path in mine:
        path.write_text("mine")
    assert remove_leftovers(target) == []
    assert all(path.read_text() == "mine" for path in mine)


def test_a_learners_old_named_backup_is_never_put_back_as_the_state(tmp_path):
    """Deleting state/ to start over, beside a backup of one's own: the next run starts over, and the backup stays."""
    backup = folder(tmp_path / ".state.old-before-lr-change", "my backup")
    assert restore_folder(tmp_path / "state") is False
    assert not (tmp_path / "state").exists() and (backup / "data.txt").read_text() == "my backup"


def test_a_full_disk_message_names_the_free_space_and_a_temporary_folder_right_inside_tmp(tmp_path, monkeypatch):
    import pickle
    import shutil
    import tempfile

    from gptoss_edu.files import DiskFull

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 * 2**30, 9 * 2**30, 3 * 2**30))
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    message = str(DiskFull(tmp_path / "ck", 5 * 2**30, before=True))  # write_checkpoint("/tmp/ck")
    assert "It needs 5.00 GiB, and 3.00 GiB are free on that disk" in message and "TMPDIR" in message
    # Picklable as itself (a DataLoader worker, a process pool): the quota's advice survives the trip.
    quota = pickle.loads(pickle.dumps(DiskFull(tmp_path / "ck", 2**30, quota=True)))
    assert quota.quota and quota.errno == errno.EDQUOT and "quota" in str(quota)


@pytest.mark.skipif(os.name != "posix", reason="flock is POSIX")
def test_a_lock_let_go_is_taken_again_by_the_next_hold(tmp_path):
    import fcntl

    from gptoss_edu.files import hold

    def locked_by_someone(path: Path) -> bool:
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    run = tmp_path / "run"
    for _ in range(2):  # the second time as well: a process that trains twice
        with hold(run, "training run"):
            with hold(run, "training run"):  # nested
                assert locked_by_someone(run)
            assert locked_by_someone(run)
        assert not locked_by_someone(run)
