"""Download a gpt-oss checkpoint from the Hugging Face Hub: what the course reads (and the licence), checked first.

``download("openai/gpt-oss-20b")`` lists the repository, keeps the files the course needs,
skips those already on disk, checks the free disk space before the first byte, and then lets
``huggingface_hub`` fetch the rest (with progress bars; run again after an interruption, it keeps
the finished files and fetches the others). huggingface_hub deletes a file it did not finish when
the download fails, but not when its process is killed (a closed terminal, a restarted notebook
kernel): such files stay as ``*.incomplete``, and the plan says how much of the disk they hold.
Without a network, or with ``HF_HUB_OFFLINE=1``, it returns the files already on disk or says what
to do. A local folder passed instead of a repository id is checked and returned as it is.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import shlex
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from .config import PRESET_DIR, cached_repo_id
from .env import env_flag
from .files import in_course_folder, write_problem
from .memory import disk_free, format_bytes

DEFAULT_REPO = "openai/gpt-oss-20b"

# ---- what the course reads from a gpt-oss repository ------------------------------------------
# All knowledge of the real repository's layout lives here. openai/gpt-oss-20b holds at its root
# config.json, generation_config.json, model.safetensors.index.json and the shards
# model-0000N-of-00002.safetensors (the Hugging Face layout, which the course loads), the tokenizer
# files (the course ships its own BPE files in data/), and two more full copies of the weights:
# original/ (OpenAI's own layout) and metal/ (Apple Metal's).
CONFIG = "config.json"
INDEX = "model.safetensors.index.json"  # checkpoint.INDEX_FILE, named here: importing hub stays torch-free
WEIGHTS_SUFFIX = ".safetensors"
# The licence and usage policy travel with the weights (11.6 kB): a folder copied for a class keeps its terms.
ROOT_FILES = (CONFIG, "generation_config.json", INDEX, "LICENSE", "USAGE_POLICY")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
ORIGINAL_DIR = "original"
METAL_DIR = "metal"


def _again(repo_id: str | None, local_dir: str | Path | None = None, original: bool = False,
           revision: str | None = None) -> str:
    """What to run to go on with a download: the same repository (not the default one) and revision, into the
    same folder."""
    repo = repo_id or "REPO_ID"
    flags, keywords = _asked(original, revision)
    in_python = repr(repo) + (f", local_dir={str(local_dir)!r}" if local_dir is not None else "") + keywords
    command = f"python -m gptoss_edu download {repo}" + (
        f" --local-dir {shlex.quote(str(local_dir))}" if local_dir is not None else "") + flags
    return f"run the download again (download({in_python}) in Python, `{command}` on the command line)"


def _asked(original: bool, revision: str | None) -> tuple[str, str]:
    """What a download asked for beyond repository and folder: as command-line flags, and as download() keywords."""
    flags = (" --original" if original else "") + (f" --revision {shlex.quote(revision)}" if revision else "")
    keywords = (", include_original=True" if original else "") + (f", revision={revision!r}" if revision else "")
    return flags, keywords


# huggingface_hub deletes the file it was fetching when it fails (2.4), so only finished files stay.
# A process killed mid-file leaves that file as *.incomplete (see unfinished_files).
KEPT = "the files it finished are kept (the one in flight starts over)"


class HubError(RuntimeError):
    """A download that cannot go on; the message says why and what to do."""


class NotEnoughDiskSpace(HubError):
    """The files to fetch do not fit in the free space of the target disk."""


class WeightsUnavailable(HubError):
    """No network (or offline mode) and the weights are not on this machine."""


class IncompleteCheckpoint(HubError):
    """A local folder that lacks files a checkpoint needs."""


def select_files(files: Sequence[tuple[str, int]], include_original: bool = False, include_metal: bool = False,
                 include_tokenizer: bool = False) -> list[tuple[str, int]]:
    """The (path, size) entries of a repository listing that the course downloads, sorted by path."""
    chosen = []
    for path, size in files:
        if size is None or int(size) < 0:
            raise ValueError(f"listing entry {path!r} has no valid size ({size!r})")
        if path.startswith("/") or "\\" in path or any(part in ("", ".", "..") for part in path.split("/")):
            # huggingface_hub refuses these too, in the versions the course pins; said here whatever the version
            raise HubError(f"the repository lists {path!r}, a path that would leave the download folder: "
                           "refusing to download from it")
        top, _, rest = path.partition("/")
        if not rest:  # a file at the repository root
            keep = (path in ROOT_FILES or path.endswith(WEIGHTS_SUFFIX)
                    or (include_tokenizer and path in TOKENIZER_FILES))
        else:
            keep = (include_original and top == ORIGINAL_DIR) or (include_metal and top == METAL_DIR)
        if keep:
            chosen.append((path, int(size)))
    names = {p for p, _ in chosen}
    missing = [what for what, ok in ((CONFIG, CONFIG in names),
                                     (f"*{WEIGHTS_SUFFIX} weights", any("/" not in p and p.endswith(WEIGHTS_SUFFIX)
                                                                        for p in names)))
               if not ok]
    if missing:
        raise HubError(f"the repository has no {' and no '.join(missing)} at its root: it is not a checkpoint "
                       "in the Hugging Face layout the course reads (is the repository id right?)")
    return sorted(chosen)


def check_local(path: str | Path, include_original: bool = False, include_metal: bool = False) -> Path:
    """Check that a folder holds a complete checkpoint (config, index, every shard); return it."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise IncompleteCheckpoint(f"{path} is not a folder: pass a checkpoint folder (with config.json and "
                                   "*.safetensors) or a Hub repository id such as 'openai/gpt-oss-20b'")
    missing = missing_files(path, include_original, include_metal)
    if missing:
        raise IncompleteCheckpoint(_not_a_checkpoint(path, missing))
    return path


def pickle_weights(folder: Path) -> list[str]:
    """Names of the pickle weight files in ``folder`` (never loaded: unpickling can run any code)."""
    return sorted({p.name for pattern in ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl") for p in folder.glob(pattern)})


def _not_a_checkpoint(path: Path, missing: list[str]) -> str:
    """Why ``path`` is no checkpoint, and what to pass instead: a folder inside it, the run's model, or a download."""
    inside = [d for d in sorted(path.iterdir()) if d.is_dir() and not missing_files(d)]
    if inside:
        return (f"{path} holds no checkpoint itself, but {' and '.join(map(str, inside[:3]))} "
                f"{'does' if len(inside) == 1 else 'do'}: pass {'that folder' if len(inside) == 1 else 'one of them'}")
    if (path / "train_state.json").is_file():  # gptoss_edu.train's STATE_JSON
        model = path.parent / "model"
        where = (f"its run's model is {model}: pass that" if model.is_dir() and not missing_files(model)
                 else "a run of a course step between GPT-2 and gpt-oss has no model folder to chat with")
        return f"{path} is a training state, the folder a run resumes from, not a model: {where}"
    pickles = pickle_weights(path)
    if pickles and not any(path.glob("*.safetensors")) and not (path / INDEX).exists():  # no safetensors begun
        return (f"{path} holds its weights only as pickle files ({', '.join(pickles[:3])}), which the course never "
                "loads (unpickling can run any code): convert them to safetensors, or fetch the model's safetensors")
    if not (path / CONFIG).exists() and not any(path.glob("*.safetensors*")):  # no download was ever begun here
        return (f"{path} holds no checkpoint (no {CONFIG}, no *.safetensors): pass a checkpoint folder or a Hub "
                "repository id such as 'openai/gpt-oss-20b'")
    # A snapshot in the Hugging Face cache is filled by downloading its repository there (no local_dir).
    repo = cached_repo_id(path)
    again = _again(repo, None if repo else path, any(m.startswith("original/") for m in missing))
    return (f"{path} is not a complete checkpoint: missing {', '.join(missing)}. "
            f"Finish the download ({again}: it keeps the finished files) or copy the files in.")


def missing_files(path: str | Path, include_original: bool = False, include_metal: bool = False) -> list[str]:
    """What a checkpoint folder lacks (config.json, weights, shards its index names), empty when complete."""
    path = Path(path).expanduser()
    missing = _missing_in(path)
    if include_original:
        missing += [f"{ORIGINAL_DIR}/{m}" for m in _missing_in(path / ORIGINAL_DIR)]
    if include_metal and not any((path / METAL_DIR).glob("*")):
        missing.append(f"{METAL_DIR}/ (Metal weights)")
    return missing


def _missing_in(folder: Path) -> list[str]:
    """What a checkpoint folder lacks: config.json, weights, or shards its index names."""
    missing = [] if (folder / CONFIG).is_file() else [CONFIG]
    index = folder / INDEX
    if index.is_file():
        from .checkpoint import CheckpointError, read_index  # here, not at the top: checkpoint imports torch

        try:
            weight_map = read_index(folder)
        except CheckpointError as e:
            return missing + [f"a readable {INDEX} ({e})"]
        if not weight_map:
            return missing + [f"the 'weight_map' of {INDEX}"]
        missing += sorted(s for s in set(weight_map.values()) if not (folder / s).is_file())
    elif not any(folder.glob(f"*{WEIGHTS_SUFFIX}")):
        missing.append(f"*{WEIGHTS_SUFFIX} weights")
    return missing


# ---- the plan: what to fetch, and whether it fits -----------------------------------------------

@dataclass
class DownloadPlan:
    """The files a download selects, those already on disk, and the space the rest needs."""

    repo_id: str
    target: Path  # where the files go: local_dir, or the Hugging Face cache
    files: list[tuple[str, int]]
    present: list[str] = field(default_factory=list)
    free_bytes: int = 0  # on the disk the files land on (the cache's blobs/ folder of the repository may be a link)
    unfinished: list[tuple[Path, int]] = field(default_factory=list)  # what killed downloads left: unfinished_files

    @property
    def unfinished_note(self) -> str:
        """What killed downloads left on this disk, and how to get the space back; "" when nothing."""
        if not self.unfinished:
            return ""
        size = format_bytes(sum(n for _, n in self.unfinished))
        first = ", ".join(str(f) for f, _ in self.unfinished[:2]) + (", ..." if len(self.unfinished) > 2 else "")
        return (f"{len(self.unfinished)} unfinished file{'s' if len(self.unfinished) > 1 else ''} of downloads that "
                f"were killed hold {size} ({first}): unless a download of {self.repo_id} is running now, delete "
                f"them to get the space back")

    @property
    def total_bytes(self) -> int:
        """Bytes of every file the download takes, those already on disk included."""
        return sum(size for _, size in self.files)

    @property
    def needed_bytes(self) -> int:
        """Bytes still to fetch: files already fully on disk do not count."""
        have = set(self.present)
        return sum(size for name, size in self.files if name not in have)

    @property
    def fits(self) -> bool:
        """Whether what is still to fetch fits in the free space."""
        return self.needed_bytes <= self.free_bytes

    def __str__(self) -> str:
        note = f"; {self.unfinished_note}" if self.unfinished else ""
        return (f"{self.repo_id}: {len(self.files)} files, {format_bytes(self.total_bytes)}; "
                f"{len(self.present)} already on disk; to fetch {format_bytes(self.needed_bytes)} into "
                f"{self.target} ({format_bytes(self.free_bytes)} free){note}")


def check_disk(needed_bytes: int, path: str | Path, unfinished_note: str = "", repo_id: str = "REPO_ID",
               original: bool = False, revision: str | None = None) -> int:
    """Raise NotEnoughDiskSpace unless ``needed_bytes`` fit in the free space at ``path``; return the free bytes."""
    free = disk_free(path)
    if needed_bytes > free:
        flags, keywords = _asked(original, revision)  # the same download elsewhere, with what was asked for
        raise NotEnoughDiskSpace(
            f"the download needs {format_bytes(needed_bytes)}, and only {format_bytes(free)} are free at {path}: "
            + (f"{unfinished_note}; or " if unfinished_note else "")
            + f"free some space there, or download to a disk with room (`python -m gptoss_edu download {repo_id} "
            f"--local-dir DIR{flags}`; in Python, download({repo_id!r}, local_dir=DIR{keywords})) and give DIR as "
            "the model")
    return free


def plan_download(repo_id: str = DEFAULT_REPO, local_dir: str | Path | None = None, *, include_original: bool = False,
                  include_metal: bool = False, include_tokenizer: bool = False,
                  revision: str | None = None) -> DownloadPlan:
    """List the repository (network), select the course's files and see which are already on disk."""
    files = select_files(list_repo_files(repo_id, revision), include_original, include_metal, include_tokenizer)
    target = Path(local_dir).expanduser() if local_dir is not None else hub_cache()
    present = [name for name, size in files if _present(repo_id, name, size, local_dir, revision)]
    plan = DownloadPlan(repo_id, target, files, present)
    plan.free_bytes = disk_free(landing_folder(repo_id, local_dir))
    plan.unfinished = [(f, f.stat().st_size) for f in unfinished_files(repo_id, local_dir)]
    return plan


def landing_folder(repo_id: str, local_dir: str | Path | None = None) -> Path:
    """Where the downloaded bytes are written: local_dir, or the repository's blobs/ folder in the cache, which a
    learner may have moved to a larger disk and linked back."""
    if local_dir is not None:
        return Path(local_dir).expanduser()
    from huggingface_hub.file_download import repo_folder_name

    return hub_cache() / repo_folder_name(repo_id=repo_id, repo_type="model") / "blobs"


def unfinished_files(repo_id: str, local_dir: str | Path | None = None) -> list[Path]:
    """The ``*.incomplete`` files that downloads of ``repo_id`` killed mid-file left (in local_dir, else the cache)."""
    if local_dir is not None:  # huggingface_hub's bookkeeping inside a local_dir
        folder = Path(local_dir).expanduser() / ".cache" / "huggingface" / "download"
    else:
        folder = landing_folder(repo_id)
    # huggingface_hub 2.x names each attempt's file <...>.<8 hex>.incomplete, never reused by a rerun; an older
    # one's plain <etag>.incomplete is resumed, so it is left out (deleting it would throw progress away).
    attempt = re.compile(r".*\.[0-9a-f]{8}\.incomplete")
    return sorted(f for f in folder.rglob("*.incomplete") if f.is_file() and attempt.fullmatch(f.name)) \
        if folder.is_dir() else []


def list_repo_files(repo_id: str, revision: str | None = None) -> list[tuple[str, int]]:
    """(path, size in bytes) of every file of a model repository on the Hub."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    entries = HfApi().list_repo_tree(repo_id, recursive=True, revision=revision)
    # The size of a large file is that of its content, not of its Git LFS pointer.
    return [(e.path, e.lfs.size if getattr(e, "lfs", None) is not None else e.size)
            for e in entries if isinstance(e, RepoFile)]


def _present(repo_id: str, name: str, size: int, local_dir: str | Path | None, revision: str | None) -> bool:
    """Whether ``name`` is already fully on disk (the right size) in local_dir or the Hugging Face cache."""
    if local_dir is not None:
        local = Path(local_dir).expanduser() / name
        return local.is_file() and local.stat().st_size == size
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, name, revision=revision)
    return isinstance(cached, str) and os.path.isfile(cached) and os.path.getsize(cached) == size


# ---- download ---------------------------------------------------------------------------------

def _plan_online(repo_id: str, local_dir: str | Path | None, **selection) -> tuple[DownloadPlan | None, str]:
    """(plan_download's plan, "") or, when the Hub cannot be asked, (None, why); a refusal is a HubError."""
    from huggingface_hub.utils import validate_repo_id

    try:  # before anything else: offline, a malformed id would only be "not in the cache"
        validate_repo_id(repo_id)
    except ValueError as e:
        raise HubError(f"{repo_id!r} is neither a folder here nor a Hub repository id ({e})") from None
    folder = Path(local_dir).expanduser() if local_dir is not None else None
    target = folder if folder is not None else hub_cache()
    try:  # a folder on the way that this user may not enter (HF_HOME in another's home) raises, not says False
        target.exists()
    except OSError as e:
        raise HubError(f"{repo_id} cannot be downloaded into {target} (it cannot be reached: {e.strerror or e}): "
                       f"{_write_elsewhere(local_dir)}") from None
    if folder is not None and folder.exists() and not folder.is_dir():
        raise HubError(f"{local_dir} is a file, not a folder: give a folder to download into (local_dir=, or "
                       "--local-dir DIR)")
    no_route = _no_route()
    if no_route:  # say so now, rather than after huggingface_hub's retries (half a minute)
        return None, no_route
    if folder is not None and folder.is_dir():  # offline, _from_disk refuses another model as well
        other = _another_model(repo_id, folder) or _foreign_checkpoint(repo_id, folder)
        if other:
            raise HubError(f"{folder} already holds another model than {repo_id} ({other}), and downloading there "
                           f"would overwrite its {CONFIG} and mix the two models' files: give {repo_id} a --local-dir "
                           "of its own (local_dir= in Python), or pass that folder itself as the model to use it")
    from huggingface_hub import errors as hf_errors

    try:
        return _within(LIST_SECONDS, lambda: plan_download(repo_id, local_dir, **selection)), ""
    except _NoAnswer:
        return None, (f"the Hub did not answer the listing of {repo_id} in {LIST_SECONDS:g} s (the connection opens, "
                      "then nothing comes back)")
    except _network_errors() as e:
        return None, f"the Hub could not be reached{_through_proxy()} ({type(e).__name__}: {e})"
    except (hf_errors.RepositoryNotFoundError, hf_errors.GatedRepoError) as e:
        raise HubError(f"cannot list {repo_id!r} on the Hub ({type(e).__name__}): check the repository id; a "
                       "gated or private repository needs `hf auth login` first") from e
    except hf_errors.RevisionNotFoundError as e:
        revision = selection.get("revision")
        raise HubError(f"{repo_id!r} has no revision {revision!r}: pass an existing branch, tag or commit") from e
    except hf_errors.HfHubHTTPError as e:  # the Hub is down or refuses
        if getattr(getattr(e, "response", None), "status_code", None) == 401:  # the library's "not found" is 404
            return None, TOKEN_REFUSED
        return None, f"{HUB_ERROR} ({e})"


def download(repo_id_or_path: str | Path = DEFAULT_REPO, local_dir: str | Path | None = None, *,
             include_original: bool = False, include_metal: bool = False, include_tokenizer: bool = False,
             revision: str | None = None, progress: bool = True) -> Path:
    """Fetch the course's files of a gpt-oss repository (or check a local folder) and return the folder."""
    if _is_local(repo_id_or_path, local_dir):
        return check_local(repo_id_or_path, include_original, include_metal)
    try:
        return _download(str(repo_id_or_path), local_dir, include_original, include_metal, include_tokenizer,
                         revision, progress)
    except HubError as e:
        elsewhere = in_course_folder(repo_id_or_path)  # "data/tiny-gpt-oss" from a terminal in notebooks/
        if elsewhere:
            raise type(e)(f"{elsewhere} (as a Hub repository id, it could not be fetched either)") from e
        owner = str(repo_id_or_path).split("/")[0]
        if "/" in str(repo_id_or_path) and os.path.isdir(owner):  # "data/tiny-gptoss": a mistyped folder?
            held = ", ".join(sorted(p.name for p in Path(owner).iterdir())[:5]) or "nothing"
            raise type(e)(f"there is no folder {repo_id_or_path} ({owner}/ holds {held}), so it was taken for a Hub "
                          f"repository id, and {e}") from e
        raise


def _download(repo_id: str, local_dir: str | Path | None, include_original: bool, include_metal: bool,
              include_tokenizer: bool, revision: str | None, progress: bool) -> Path:
    plan, unreachable = _plan_online(repo_id, local_dir, include_original=include_original,
                                     include_metal=include_metal, include_tokenizer=include_tokenizer, revision=revision)
    if plan is None:  # what is on disk may still do
        return _from_disk(repo_id, local_dir, include_original, include_metal, revision, reason=unreachable)
    errors = _network_errors()
    again = _again(repo_id, local_dir, include_original, revision)
    unwritable = write_problem(plan.target)
    if unwritable and not plan.needed_bytes:
        # A class's shared copy, complete and read-only: huggingface_hub would still write its bookkeeping there
        if progress:
            print(f"{repo_id}: every file is already there ({unwritable}): used as it is")
        return _from_disk(repo_id, local_dir, include_original, include_metal, revision, reason=unwritable)
    if unwritable:  # said before the plan promises a download
        raise HubError(f"{repo_id} cannot be downloaded into {plan.target} ({unwritable}): {_write_elsewhere(local_dir)}")
    if progress:
        print(plan)
    check_disk(plan.needed_bytes, landing_folder(repo_id, local_dir), plan.unfinished_note, repo_id, include_original,
               revision)
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import snapshot_download

    try:
        with _progress_bars(progress):
            folder = snapshot_download(repo_id, revision=revision, local_dir=local_dir,
                                       allow_patterns=[name for name, _ in plan.files])
    except errors as e:
        raise HubError(f"the download of {repo_id} stopped{_through_proxy()} ({type(e).__name__}: {e}); {KEPT}: "
                       f"{again} to fetch the rest") from e
    except hf_errors.HfHubHTTPError as e:  # the Hub refused mid-way (rate limit, a server error after retries)
        raise HubError(f"the Hub answered the download of {repo_id} with an error ({e}); {KEPT}: wait a little, "
                       f"then {again} to fetch the rest") from e
    except (OSError, RuntimeError) as e:  # writing failed (the disk filled up, no permission), or Xet refused
        xet_auth, xet_missing = _xet_errors()
        code = e.errno if isinstance(e, OSError) else _os_error_code(e)
        if isinstance(e, xet_auth):  # a PermissionError, but the Hub's, not the disk's
            raise HubError(f"the Hub's storage refused the download of {repo_id} ({e}); {KEPT}: log in "
                           f"(`hf auth login`; a gated repository needs it), then {again}") from e
        if isinstance(e, xet_missing):  # a FileNotFoundError, but on the Hub
            raise HubError(f"the Hub's storage could not serve a file of {repo_id} ({e}); {KEPT}: wait a little, "
                           f"then {again}") from e
        if code == errno.EDQUOT:
            raise NotEnoughDiskSpace(
                f"this account's disk quota was used up during the download of {repo_id} into {plan.target} (it "
                f"needs {format_bytes(plan.needed_bytes)} in all); {KEPT}: free some space in your account, then "
                f"{again}") from e
        if code == errno.ENOSPC:
            raise NotEnoughDiskSpace(
                f"the disk at {plan.target} filled up during the download of {repo_id} (it needs "
                f"{format_bytes(plan.needed_bytes)} in all); {KEPT}: free some space there, then "
                f"{again}") from e
        if code in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise HubError(f"the download of {repo_id} could not write to {plan.target} ({e}); {KEPT}: make the "
                           f"folder writable, then {again}; or download elsewhere with "
                           "--local-dir DIR") from e
        raise HubError(f"the download of {repo_id} stopped{_through_proxy()} ({type(e).__name__}: {e}); {KEPT}: "
                       f"{again} to fetch the rest") from e
    return check_local(folder, include_original, include_metal)


def _write_elsewhere(local_dir: str | Path | None) -> str:
    """What to do when the download's folder cannot be written (or reached)."""
    return (f"set {cache_variable()} to a folder you may write, or download elsewhere with --local-dir DIR"
            if local_dir is None else "give --local-dir a folder you may write")


def _os_error_code(e: BaseException) -> int | None:
    """The errno an error names in its text: hf_xet, which fetches the large files, reports a full disk (and every
    other failure, a lost connection too) as a RuntimeError ending "No space left on device (os error 28)"."""
    found = re.search(r"\(os error (\d+)\)", str(e))
    return int(found.group(1)) if found else None


def _from_disk(repo_id: str, local_dir: str | Path | None, include_original: bool, include_metal: bool,
               revision: str | None, reason: str) -> Path:
    """The checkpoint already on disk (local_dir, else the Hugging Face cache), or WeightsUnavailable."""
    where = f"in {local_dir}" if local_dir is not None else f"in the Hugging Face cache ({hub_cache()})"
    folder: str | Path | None = local_dir
    if folder is None:
        from huggingface_hub import snapshot_download

        try:  # with local_files_only the library only looks up the cached snapshot of this revision
            folder = snapshot_download(repo_id, revision=revision, local_files_only=True, allow_patterns=[CONFIG])
        except Exception:  # any failure here means the same: no usable cached snapshot
            folder = None
    detail = "nothing is there"
    if folder is not None and Path(folder).expanduser().is_dir():
        missing = missing_files(folder, include_original, include_metal)
        other = _another_model(repo_id, Path(folder).expanduser())
        if other:  # offline, a folder is taken on trust: at least it must not be plainly another model
            raise WeightsUnavailable(f"{folder} holds another model than {repo_id}: {other}. Pass that folder's "
                                     f"path itself to use it, or give {repo_id} a --local-dir of its own.")
        if not missing:
            return Path(folder).expanduser()
        detail = f"missing {', '.join(missing)}"
    excluded = [f"--exclude '{d}/*'" for d, wanted in (("original", include_original), ("metal", include_metal))
                if not wanted]
    offline = _offline_switch()
    fix = ("Fix the token" if reason == TOKEN_REFUSED else
           "Wait a few minutes (the Hub is busy, or limits how often one address asks: `hf auth login` raises the "
           "limit)" if reason.startswith(HUB_ERROR) else
           "Restart the kernel (or Python), which reads the offline switch as huggingface_hub is imported,"
           if offline == "" else
           f"Connect to the internet{f' (and unset {offline})' if offline else ''}")
    raise WeightsUnavailable(
        f"the weights of {repo_id} could not be fetched: {reason}, and they are not complete {where} ({detail}). "
        f"{fix} and "
        f"{_again(repo_id, local_dir, include_original, revision)}, or download them on another machine "
        f"(`hf download {repo_id} {' '.join(([f'--revision {shlex.quote(revision)}'] if revision else []) + excluded + ['--local-dir DIR'])}`), "
        "copy DIR here and pass its path instead of the repository id.")


# The repositories whose config.json the course ships (gptoss_edu/presets), to recognise them offline.
KNOWN_REPOS = {"openai/gpt-oss-20b": "gpt-oss-20b", "openai/gpt-oss-120b": "gpt-oss-120b"}
_TELLING_KEYS = ("model_type", "num_hidden_layers", "num_local_experts", "hidden_size", "vocab_size")


def _another_model(repo_id: str, folder: Path) -> str | None:
    """How ``folder``'s config.json differs from a known ``repo_id``'s (layers, experts, ...), or None."""
    preset = KNOWN_REPOS.get(repo_id.lower())
    if preset is None or not (folder / CONFIG).is_file():
        return None
    try:
        theirs = json.loads((folder / CONFIG).read_bytes())
    except (OSError, ValueError):
        return None  # read_config names a damaged config.json when the model loads
    if not isinstance(theirs, dict):
        return None
    ours = json.loads((PRESET_DIR / f"{preset}.config.json").read_text())
    differ = [k for k in _TELLING_KEYS if theirs.get(k) != ours.get(k)]
    if not differ:
        return None
    return (f"its {CONFIG} has " + ", ".join(f"{k} {theirs.get(k)!r}" for k in differ)
            + f", where {repo_id}'s has " + ", ".join(f"{ours.get(k)!r}" for k in differ))


def _foreign_checkpoint(repo_id: str, folder: Path) -> str | None:
    """Why ``folder`` holds a checkpoint that huggingface_hub did not download there, or None.

    For a repository the course does not know, the only sign of a download is huggingface_hub's own
    record of each file it wrote into a local_dir; a config.json without one came from elsewhere.
    """
    if repo_id.lower() in KNOWN_REPOS or not (folder / CONFIG).is_file():
        return None  # a known repository's config.json is compared with its own (_another_model)
    if (folder / ".cache" / "huggingface" / "download" / f"{CONFIG}.metadata").is_file():
        return None
    return f"its {CONFIG} was not downloaded there by huggingface_hub"


def _xet_errors() -> tuple[type[BaseException], type[BaseException]]:
    """hf_xet's authentication and missing-object errors (an OSError's subclasses), or stand-ins that match nothing."""
    class _Never(Exception):
        pass

    try:
        import hf_xet
    except ImportError:
        return _Never, _Never
    return (getattr(hf_xet, "XetAuthenticationError", _Never), getattr(hf_xet, "XetObjectNotFoundError", _Never))


def _is_local(repo_id_or_path: str | Path, local_dir: str | Path | None = None) -> bool:
    """A path, not a repository id: an existing file or folder, or written like a path.

    ``download("openai/gpt-oss-20b", local_dir="openai/gpt-oss-20b")`` is the repository, whose download is
    resumed in that folder: taken for the folder, a half-finished download could never be finished.
    """
    if isinstance(repo_id_or_path, Path):
        return True
    s = str(repo_id_or_path)
    # A repository id is "name" or "owner/name"; anything else is meant as a folder.
    if s.startswith(("/", ".", "~")) or "\\" in s or s.count("/") > 1:
        return True
    if local_dir is not None and os.path.realpath(s) == os.path.realpath(os.path.expanduser(local_dir)):
        return False
    return os.path.exists(s)


def _no_route() -> str | None:
    """Why the Hub cannot be asked at all (offline mode, or no connection opens), or None."""
    switch = _offline_switch()
    if switch:
        return f"offline mode is on ({switch}={os.environ[switch].strip()})"
    if switch == "":
        return ("offline mode is on (huggingface_hub read HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE as it was imported, "
                "and keeps it though neither is set now)")
    unreachable = _hub_unreachable()
    return f"the Hub could not be reached ({unreachable})" if unreachable else None


def hub_problem(repo_id: str = DEFAULT_REPO, seconds: float = 10.0) -> str | None:
    """Why the Hub cannot tell about ``repo_id`` now (offline mode, no route, no answer in ``seconds``), or None.

    It waits at most 2 x PROBE_SECONDS (the name lookup, then the connections) plus ``seconds``.
    """
    no_route = _no_route()
    if no_route:
        return no_route
    from huggingface_hub import HfApi

    # A connection that opens says little: a captive portal or a stalled proxy opens it and never answers.
    try:
        _within(seconds, lambda: HfApi().model_info(repo_id, timeout=seconds))
    except _NoAnswer:
        return f"the Hub did not answer about {repo_id} in {seconds:g} s"
    except _network_errors() as e:
        return f"the Hub could not be reached{_through_proxy()} ({type(e).__name__})"
    except Exception as e:  # noqa: BLE001 - the Hub answered, with an error (no such repository, rate limit, ...)
        return f"the Hub answered about {repo_id} with an error ({type(e).__name__})"
    return None


def _offline_switch() -> str | None:
    """The variable that turns offline mode on (HF_HUB_OFFLINE, or transformers' TRANSFORMERS_OFFLINE, which
    huggingface_hub obeys too); "" when huggingface_hub read one at its import that is unset now; None when online."""
    from huggingface_hub import constants

    # huggingface_hub's own rule: HF_HUB_OFFLINE when it is set (to anything), else TRANSFORMERS_OFFLINE.
    name = "HF_HUB_OFFLINE" if os.environ.get("HF_HUB_OFFLINE") else "TRANSFORMERS_OFFLINE"
    if env_flag(name):
        return name
    return "" if constants.HF_HUB_OFFLINE else None


PROBE_SECONDS = 5.0
# huggingface_hub lists a repository with no time limit, and a network that lets a connection open and
# then never answers (a captive portal, a stalled proxy) would hold the listing for ever.
LIST_SECONDS = 60.0


class _NoAnswer(TimeoutError):
    """The work given to _within did not finish in time (a TimeoutError of the network's own is not one)."""


def _within(seconds: float, work):
    """``work()``'s result, its exception, or _NoAnswer when it has not finished in ``seconds`` (it is left running)."""
    answer: dict[str, object] = {}

    def run() -> None:
        try:
            answer["result"] = work()
        except BaseException as e:  # noqa: BLE001 - handed to the caller, whatever it is
            answer["error"] = e

    thread = threading.Thread(target=run, daemon=True)  # a daemon: work that never returns cannot keep Python up
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise _NoAnswer(f"no answer in {seconds:g} s")
    if "error" in answer:
        raise answer["error"]  # type: ignore[misc]
    return answer["result"]


# A stale HF_TOKEN (or token saved by an old `hf auth login`) is refused even for a public repository.
HUB_ERROR = "the Hub answered with an error"  # to the listing: a rate limit (429) or a server error (5xx)
TOKEN_REFUSED = ("the Hub refused the access token this machine sends (401 Unauthorized: HF_TOKEN, or the token "
                 "saved by `hf auth login`, is invalid or expired; a public repository needs none): unset HF_TOKEN, "
                 "or run `hf auth logout` or `hf auth login` again")


def _through_proxy() -> str:
    """Words naming the proxy set for HTTPS, for a message about an unreachable Hub; "" when none is set."""
    proxies = urllib.request.getproxies()
    url = proxies.get("https") or proxies.get("all")
    if not url:
        return ""
    names = [n for n in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy") if os.environ.get(n)]
    origin = f"set in {names[0]}" if names else "from the system's proxy settings"
    return f" through the proxy {url} ({origin}: check that it works, or unset it)"


def _hub_unreachable() -> str | None:
    """Why the Hub's host cannot be reached at all (no name, no route, refused), or None if it answers.

    Behind a proxy (from the environment or the system's settings) a direct connection proves
    nothing, so then the probe is skipped (None).
    """
    from huggingface_hub import constants

    proxies = urllib.request.getproxies()
    if proxies.get("https") or proxies.get("all"):
        return None
    url = urllib.parse.urlparse(constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = _resolve(host, port, PROBE_SECONDS)
    except OSError as e:
        return f"{host}:{port}: {e}"
    # One deadline for all the addresses: a network that drops what it is sent would otherwise cost
    # PROBE_SECONDS an address (the Hub's name has several). Each address waits at most its share of
    # what is left, so a silent first one (a broken IPv6 route) still leaves time for the next.
    deadline = time.monotonic() + PROBE_SECONDS
    error: OSError = TimeoutError(f"no address answered in {PROBE_SECONDS:g} s")
    for i, address in enumerate(addresses):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.create_connection(address, timeout=left / (len(addresses) - i)):
                return None
        except OSError as e:
            error = e
    return f"{host}:{port}: {error}"


def _resolve(host: str, port: int, timeout: float) -> list[tuple[str, int]]:
    """The addresses of ``host``, or an OSError; a lookup that gives no answer in ``timeout`` s is one too."""
    # getaddrinfo has no time limit of its own, and a resolver that never answers would hold the
    # probe (and then huggingface_hub) for as long as it likes: ask it from a thread and stop waiting.
    try:
        infos = _within(timeout, lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    except _NoAnswer:
        raise TimeoutError(f"the name lookup gave no answer in {timeout:g} s") from None
    unique = dict.fromkeys(info[4][:2] for info in infos)
    if not unique:
        raise OSError(f"the name lookup of {host} gave no address")
    return list(unique)


def cache_problem() -> str | None:
    """Why nothing can be downloaded into the Hugging Face cache (read-only, say), with what to do; or None."""
    problem = write_problem(hub_cache())
    return f"the Hugging Face cache cannot be written ({problem}): set {cache_variable()} to a folder you may " \
        "write" if problem else None


def cache_variable() -> str:
    """The variable that moves the Hugging Face cache here: HF_HUB_CACHE when set (it wins over HF_HOME)."""
    return "HF_HUB_CACHE" if os.environ.get("HF_HUB_CACHE") else "HF_HOME"


def hub_cache() -> Path:
    """The Hugging Face cache folder (HF_HUB_CACHE, HF_HOME), or its default where huggingface_hub is missing."""
    try:
        from huggingface_hub import constants
    except ImportError:  # the environment check still says where the cache would be
        return Path.home() / ".cache" / "huggingface" / "hub"
    return Path(constants.HF_HUB_CACHE)


def cached_snapshot(repo_id: str, filenames: Sequence[str], revision: str | None = None) -> Path | None:
    """The cached snapshot folder of ``repo_id`` when it holds every one of ``filenames``, else None; never online."""
    from huggingface_hub import try_to_load_from_cache

    found = [try_to_load_from_cache(repo_id, name, revision=revision) for name in filenames]
    if not filenames or not all(isinstance(f, str) for f in found):  # None, or the library's "not on the Hub"
        return None
    # Every name resolves through the same revision, so into one snapshot folder (a nested name, deeper in it).
    return Path(found[0]).parents[len(Path(filenames[0]).parts) - 1]


def _network_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean "the Hub cannot be reached", for the installed huggingface_hub."""
    from huggingface_hub import errors as hf_errors

    found: list[type[BaseException]] = [hf_errors.OfflineModeIsEnabled, hf_errors.LocalEntryNotFoundError,
                                        ConnectionError, TimeoutError]
    # huggingface_hub 1.x and 2.x talk through httpx (vendored as httpx2 in 2.x); 0.x through requests.
    for module in ("httpx2", "httpx", "requests"):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        for name in ("TransportError", "ConnectionError", "Timeout"):
            cls = getattr(mod, name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                found.append(cls)
    return tuple(found)


@contextmanager
def _progress_bars(on: bool) -> Iterator[None]:
    """huggingface_hub's progress bars on or off for the duration, then as they were."""
    from huggingface_hub import constants
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    if constants.HF_HUB_DISABLE_PROGRESS_BARS is not None:  # the learner's setting wins; asking otherwise warns
        yield
        return
    was_disabled = are_progress_bars_disabled()
    (enable_progress_bars if on else disable_progress_bars)()
    try:
        yield
    finally:
        (disable_progress_bars if was_disabled else enable_progress_bars)()


# ---- `python -m gptoss_edu download` -------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The download command's arguments."""
    parser.add_argument("repo", nargs="?", default=DEFAULT_REPO, help=f"repository id or local folder (default {DEFAULT_REPO})")
    parser.add_argument("--local-dir", help="download into this folder (default: the Hugging Face cache)")
    parser.add_argument("--revision", help="branch, tag or commit")
    parser.add_argument("--original", action="store_true", help="also fetch original/ (OpenAI's own layout)")
    parser.add_argument("--dry-run", action="store_true", help="only print what would be fetched and whether it fits")


def run(args: argparse.Namespace) -> int:
    """Download (or check) the checkpoint and print the folder that holds it (the download command)."""
    try:
        if args.dry_run and not _is_local(args.repo, args.local_dir):
            plan, unreachable = _plan_online(args.repo, args.local_dir, include_original=args.original,
                                             revision=args.revision)
            if plan is None:
                raise HubError(f"cannot plan the download: {unreachable}. A dry run lists the repository on the "
                               "Hub, so it needs the network; run it where the Hub can be reached")
            print(plan)
            unwritable = write_problem(plan.target) if plan.needed_bytes else None
            if unwritable:  # as the download itself would refuse it
                print(f"it cannot be written there ({unwritable}): choose a --local-dir you may write"
                      + ("" if args.local_dir else f", or set {cache_variable()} to one"))
                return 1
            print("it fits" if plan.fits else "it does NOT fit: free some space or choose --local-dir on a larger disk")
            return 0 if plan.fits else 1
        folder = download(args.repo, args.local_dir, include_original=args.original, revision=args.revision)
    except HubError as e:
        print(f"download: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = _again(args.repo, args.local_dir, args.original, args.revision)
        print(f"\ndownload: interrupted; {KEPT}: {again} to fetch the rest", file=sys.stderr)
        return 130
    print(folder)
    return 0
