"""gptoss_edu.hub without a network: file selection, disk check, resume, offline mode, local folders.

The Hub's listing and downloading functions are replaced by fakes that serve files from a dict,
so every path of download() runs here exactly as it would against the real repository.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
import sys
from collections import namedtuple
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import constants
from huggingface_hub import errors as hf_errors

from gptoss_edu import hub
from gptoss_edu.__main__ import main
from simulated import unenterable

REPO = "openai/gpt-oss-20b"

# The real repository's file list (sizes made up but of the right order: shards of several GB).
REAL_FILES = [
    (".gitattributes", 1_570), ("LICENSE", 11_357), ("README.md", 7_090), ("USAGE_POLICY", 200),
    ("chat_template.jinja", 16_738), ("config.json", 1_806), ("generation_config.json", 177),
    ("model-00000-of-00002.safetensors", 4_625 * 10**6), ("model-00001-of-00002.safetensors", 4_115 * 10**6),
    ("model-00002-of-00002.safetensors", 4_178 * 10**6), ("model.safetensors.index.json", 36_355),
    ("special_tokens_map.json", 98), ("tokenizer.json", 27_868_174), ("tokenizer_config.json", 4_200),
    ("original/config.json", 376), ("original/dtypes.json", 13_083), ("original/model.safetensors", 13_761 * 10**6),
    ("metal/model.bin", 13_750 * 10**6),
]
COURSE = ["LICENSE", "USAGE_POLICY", "config.json", "generation_config.json", "model-00000-of-00002.safetensors",
          "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"]
SHARDS = [n for n in COURSE if n.endswith(".safetensors")]


@pytest.fixture(autouse=True)
def online(monkeypatch):
    """Every test starts online (the Hub is faked), whatever the environment running the tests says."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_hub_unreachable", lambda: None)  # the faked Hub always answers


# ---- selection ----------------------------------------------------------------------------------

def test_hub_cache_follows_huggingface_hub_and_has_a_default_without_it(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    assert hub.hub_cache() == tmp_path / "cache"
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed: import raises
    assert hub.hub_cache() == Path.home() / ".cache" / "huggingface" / "hub"


def test_select_keeps_only_what_the_course_reads():
    chosen = hub.select_files(REAL_FILES)
    assert [name for name, _ in chosen] == COURSE
    assert dict(chosen) == {n: s for n, s in REAL_FILES if n in COURSE}  # sizes carried through


def test_select_adds_original_metal_and_tokenizer_only_when_asked():
    names = lambda **kw: {n for n, _ in hub.select_files(REAL_FILES, **kw)}  # noqa: E731
    assert names(include_original=True) - set(COURSE) == {"original/config.json", "original/dtypes.json",
                                                          "original/model.safetensors"}
    assert names(include_metal=True) - set(COURSE) == {"metal/model.bin"}
    assert names(include_tokenizer=True) - set(COURSE) == {"tokenizer.json", "tokenizer_config.json",
                                                           "special_tokens_map.json", "chat_template.jinja"}
    everything = names(include_original=True, include_metal=True, include_tokenizer=True)
    assert everything == {n for n, _ in REAL_FILES} - {".gitattributes", "README.md"}


def test_select_ignores_weights_in_other_folders_and_refuses_a_non_checkpoint():
    files = [("config.json", 10), ("model.safetensors", 100), ("extra/model.safetensors", 100)]
    assert hub.select_files(files) == [("config.json", 10), ("model.safetensors", 100)]
    with pytest.raises(hub.HubError, match=r"no config\.json"):
        hub.select_files([("model.safetensors", 1), ("README.md", 2)])
    with pytest.raises(hub.HubError, match=r"no \*\.safetensors weights"):
        hub.select_files([("config.json", 1), ("original/model.safetensors", 2)], include_original=True)
    with pytest.raises(ValueError, match="no valid size"):
        hub.select_files([("config.json", None)])
    # A listing with a path that climbs out of the folder: refused whatever huggingface_hub would do.
    for path in ("original/../../.bashrc", "/etc/passwd", "original//x", "original\\..\\x", "./config.json"):
        with pytest.raises(hub.HubError, match="a path that would leave the download folder"):
            hub.select_files([("config.json", 1), ("model.safetensors", 2), (path, 3)], include_original=True)


# ---- a fake Hub ---------------------------------------------------------------------------------

Entry = namedtuple("Entry", "path size lfs")
Lfs = namedtuple("Lfs", "size")


def http_response(status: int, repo_id: str):
    """A response of the HTTP client huggingface_hub uses, for its error types."""
    import httpx2

    url = f"https://huggingface.co/api/models/{repo_id}/tree/main"
    return httpx2.Response(status, request=httpx2.Request("GET", url))


class FakeHub:
    """Serves REAL_FILES-shaped repositories from memory; files are written with their listed size."""

    def __init__(self, monkeypatch, files=REAL_FILES, free=10**15):
        self.files, self.free = dict(files), free
        self.listed, self.downloads = 0, []
        monkeypatch.setattr(hub, "list_repo_files", self.list_repo_files)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", self.snapshot_download)
        monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(2 * self.free, self.free, self.free))

    def list_repo_files(self, repo_id, revision=None):
        self.listed += 1
        if repo_id != REPO:
            raise hf_errors.RepositoryNotFoundError(f"404 {repo_id}", response=http_response(404, repo_id))
        return list(self.files.items())

    def snapshot_download(self, repo_id, *, revision=None, local_dir=None, allow_patterns=None, **kw):
        assert not kw.get("local_files_only"), "the online path must not be local-only"
        self.downloads.append(sorted(allow_patterns))
        folder = Path(local_dir)
        for name in allow_patterns:
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size == self.files[name]:
                continue
            if name == "model.safetensors.index.json":
                path.write_text(index_json(SHARDS, self.files[name]))
            else:  # sparse: the listed size without writing gigabytes
                with open(path, "wb") as f:
                    f.truncate(self.files[name])
        return str(folder)


def index_json(shards, size=0) -> str:
    """An index naming ``shards``, padded with spaces (valid JSON) to ``size`` bytes."""
    text = json.dumps({"weight_map": {f"t{i}": s for i, s in enumerate(shards)}})
    return text.ljust(size)


def fill(folder: Path, names, sizes=dict(REAL_FILES), index_shards=SHARDS):
    """Put ``names`` into ``folder`` at their listed sizes (sparse), the index naming ``index_shards``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "model.safetensors.index.json":
            path.write_text(index_json(index_shards, sizes.get(name, 0)))
        else:
            with open(path, "wb") as f:
                f.truncate(sizes.get(name, 8))


# ---- download, disk check, resume -----------------------------------------------------------------

def test_download_fetches_only_the_course_files(tmp_path, monkeypatch, capsys):
    fake = FakeHub(monkeypatch)
    out = hub.download(REPO, tmp_path / "w")
    assert out == tmp_path / "w"
    assert f"{REPO}: 8 files" in capsys.readouterr().out
    assert fake.downloads == [COURSE]
    assert sorted(p.name for p in out.iterdir()) == COURSE


def test_download_with_original_checks_the_original_folder_too(tmp_path, monkeypatch):
    fake = FakeHub(monkeypatch)
    out = hub.download(REPO, tmp_path / "w", include_original=True, progress=False)
    assert set(fake.downloads[0]) - set(COURSE) == {"original/config.json", "original/dtypes.json",
                                                    "original/model.safetensors"}
    assert (out / "original" / "model.safetensors").stat().st_size == 13_761 * 10**6


def test_disk_check_refuses_before_the_first_byte(tmp_path, monkeypatch):
    needed = sum(s for n, s in REAL_FILES if n in COURSE)
    fake = FakeHub(monkeypatch, free=needed - 1)
    with pytest.raises(hub.NotEnoughDiskSpace) as e:
        hub.download(REPO, tmp_path / "w", progress=False)
    msg = str(e.value)
    assert hub.format_bytes(needed) in msg and hub.format_bytes(needed - 1) in msg
    assert str(tmp_path / "w") in msg and "--local-dir DIR" in msg and "local_dir=DIR" in msg  # the command line's way and Python's
    assert f"`python -m gptoss_edu download {REPO} --local-dir DIR`" in msg  # this repository, not the default one
    assert fake.downloads == [] and not (tmp_path / "w").exists()
    # What was asked for goes with the advice: without them, it would fetch main, and no original/.
    fake.free = 1
    with pytest.raises(hub.NotEnoughDiskSpace) as e:
        hub.download(REPO, tmp_path / "w", include_original=True, revision="v1.0", progress=False)
    assert (f"`python -m gptoss_edu download {REPO} --local-dir DIR --original --revision v1.0`; in Python, "
            f"download({REPO!r}, local_dir=DIR, include_original=True, revision='v1.0')" in str(e.value))


def test_disk_check_passes_with_exactly_enough(tmp_path, monkeypatch):
    needed = sum(s for n, s in REAL_FILES if n in COURSE)
    fake = FakeHub(monkeypatch, free=needed)
    hub.download(REPO, tmp_path / "w", progress=False)
    assert fake.downloads == [COURSE]


def test_resume_does_not_count_files_already_there(tmp_path, monkeypatch):
    sizes = dict(REAL_FILES)
    target = tmp_path / "w"
    fill(target, ["config.json", "model-00000-of-00002.safetensors", "model-00001-of-00002.safetensors"])
    # A partial shard (wrong size) is still to fetch.
    with open(target / "model-00002-of-00002.safetensors", "wb") as f:
        f.truncate(10)
    rest = sum(sizes[n] for n in ["LICENSE", "USAGE_POLICY", "generation_config.json",
                                  "model-00002-of-00002.safetensors", "model.safetensors.index.json"])
    FakeHub(monkeypatch, free=rest)
    plan = hub.plan_download(REPO, target)
    assert sorted(plan.present) == ["config.json", "model-00000-of-00002.safetensors",
                                    "model-00001-of-00002.safetensors"]
    assert plan.needed_bytes == rest and plan.total_bytes > rest and plan.fits
    assert hub.download(REPO, target, progress=False) == target  # enough for the rest, not for all
    assert (target / "model-00002-of-00002.safetensors").stat().st_size == sizes["model-00002-of-00002.safetensors"]
    fill(target, ["model-00002-of-00002.safetensors"], sizes={})  # partial again: only that shard is needed
    shard = sizes["model-00002-of-00002.safetensors"]
    FakeHub(monkeypatch, free=shard - 1)
    with pytest.raises(hub.NotEnoughDiskSpace):
        hub.download(REPO, target, progress=False)
    fake = FakeHub(monkeypatch, free=shard)
    hub.download(REPO, target, progress=False)
    assert fake.downloads == [COURSE]  # the library is still given every file: it verifies what is there


def test_disk_free_asks_the_nearest_existing_folder(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(shutil, "disk_usage", lambda p: asked.append(Path(p)) or shutil._ntuple_diskusage(3, 2, 1))
    assert hub.disk_free(tmp_path / "not" / "yet") == 1
    assert asked == [tmp_path]


def test_unknown_repository_is_a_clear_error(tmp_path, monkeypatch):
    FakeHub(monkeypatch)
    with pytest.raises(hub.HubError, match="check the repository id"):
        hub.download("openai/gpt-oss-2b", tmp_path, progress=False)


# ---- offline -----------------------------------------------------------------------------------

@pytest.fixture
def offline(monkeypatch):
    """HF_HUB_OFFLINE=1 as huggingface_hub sees it (it reads the variable once, at import)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_offline_without_the_weights_says_what_to_do(tmp_path, monkeypatch, offline):
    fake = FakeHub(monkeypatch)
    with pytest.raises(hub.WeightsUnavailable) as e:
        hub.download(REPO, tmp_path / "w", progress=False)
    msg = str(e.value)
    assert "HF_HUB_OFFLINE" in msg and "could not be fetched" in msg
    assert "pass its path" in msg and "Connect" in msg
    assert fake.listed == 0 and fake.downloads == []


def test_offline_advice_fetches_what_was_asked_for(tmp_path, monkeypatch, offline):
    FakeHub(monkeypatch)
    fill(tmp_path / "w", COURSE)
    with pytest.raises(hub.WeightsUnavailable, match="missing original/config.json") as e:
        hub.download(REPO, tmp_path / "w", include_original=True, progress=False)
    assert f"`hf download {REPO} --exclude 'metal/*' --local-dir DIR`" in str(e.value)
    with pytest.raises(hub.WeightsUnavailable) as e:
        hub.download(REPO, tmp_path / "elsewhere", progress=False)
    assert f"`hf download {REPO} --exclude 'original/*' --exclude 'metal/*' --local-dir DIR`" in str(e.value)
    # A revision asked for is a revision advised: without it the advice fetches main.
    with pytest.raises(hub.WeightsUnavailable) as e:
        hub.download(REPO, tmp_path / "elsewhere", revision="v1.0", progress=False)
    assert f"`hf download {REPO} --revision v1.0 --exclude 'original/*' --exclude 'metal/*' --local-dir DIR`" in \
        str(e.value)
    assert (f"download({REPO!r}, local_dir={str(tmp_path / 'elsewhere')!r}, revision='v1.0') in Python, `python -m "
            f"gptoss_edu download {REPO} --local-dir {tmp_path / 'elsewhere'} --revision v1.0` on the command line"
            in str(e.value))


def test_offline_with_the_weights_on_disk_returns_them(tmp_path, monkeypatch, offline):
    fake = FakeHub(monkeypatch)
    fill(tmp_path / "w", COURSE)
    assert hub.download(REPO, tmp_path / "w", progress=False) == tmp_path / "w"
    assert fake.listed == 0 and fake.downloads == []


def test_offline_a_local_dir_holding_plainly_another_model_is_refused(tmp_path, monkeypatch, offline):
    """Offline a folder is taken on trust; the tiny model in openai/gpt-oss-120b's place is not."""
    from gptoss_edu.config import PRESET_DIR

    FakeHub(monkeypatch)
    fill(tmp_path / "w", COURSE)
    (tmp_path / "w" / "config.json").write_text((PRESET_DIR / "gpt-oss-20b.config.json").read_text())
    assert hub.download("openai/gpt-oss-20b", tmp_path / "w", progress=False) == tmp_path / "w"
    with pytest.raises(hub.WeightsUnavailable, match="holds another model than OpenAI/gpt-oss-120b"):
        hub.download("OpenAI/gpt-oss-120b", tmp_path / "w", progress=False)  # the Hub's ids ignore case
    with pytest.raises(hub.WeightsUnavailable) as e:
        hub.download("openai/gpt-oss-120b", tmp_path / "w", progress=False)
    assert str(e.value).startswith(f"{tmp_path / 'w'} holds another model than openai/gpt-oss-120b: its config.json "
                                   "has num_hidden_layers 24, num_local_experts 32, where openai/gpt-oss-120b's has "
                                   "36, 128. Pass that folder's path itself")
    (tmp_path / "w" / "config.json").write_text('{"model_type": "gpt2", "n_layer": 12}')
    with pytest.raises(hub.WeightsUnavailable, match="model_type 'gpt2'.*'gpt_oss'"):
        hub.download("openai/gpt-oss-20b", tmp_path / "w", progress=False)
    assert hub.download("someone/other-model", tmp_path / "w", progress=False) == tmp_path / "w"  # nothing to check


def test_offline_a_local_dir_whose_config_json_is_no_object_is_no_traceback(tmp_path, monkeypatch, offline):
    """A config.json of '[]' is for the loader to name when the model loads, not an AttributeError here."""
    FakeHub(monkeypatch)
    fill(tmp_path / "w", COURSE)
    (tmp_path / "w" / "config.json").write_text("[]")
    assert hub.download(REPO, tmp_path / "w", progress=False) == tmp_path / "w"


def test_offline_names_the_missing_shard(tmp_path, monkeypatch, offline):
    FakeHub(monkeypatch)
    fill(tmp_path / "w", [n for n in COURSE if n != "model-00001-of-00002.safetensors"])
    with pytest.raises(hub.WeightsUnavailable, match="model-00001-of-00002.safetensors"):
        hub.download(REPO, tmp_path / "w", progress=False)


def test_offline_finds_the_hugging_face_cache(tmp_path, monkeypatch, offline):
    """With no local_dir the library's cache lookup (local files only) is asked, and its folder checked."""
    snapshot = tmp_path / "cache" / "snapshots" / "abc"
    fill(snapshot, COURSE)
    calls = []

    def cached(repo_id, *, revision=None, local_files_only=False, allow_patterns=None, **kw):
        calls.append(local_files_only)
        if repo_id != REPO:
            raise hf_errors.LocalEntryNotFoundError("not cached")
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", cached)
    assert hub.download(REPO, progress=False) == snapshot
    assert calls == [True]
    with pytest.raises(hub.WeightsUnavailable, match="Hugging Face cache"):
        hub.download("openai/gpt-oss-120b", progress=False)


def test_no_network_falls_back_to_disk_or_explains(tmp_path, monkeypatch):
    """A connection error while listing (no offline flag) is answered like offline mode."""
    import httpx2

    def unreachable(repo_id, revision=None):
        raise httpx2.ConnectError("[Errno -3] Temporary failure in name resolution")

    FakeHub(monkeypatch)
    monkeypatch.setattr(hub, "list_repo_files", unreachable)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(hub.WeightsUnavailable, match="could not be reached.*ConnectError") as e:
        hub.download(REPO, tmp_path / "w", progress=False)
    assert "Connect to the internet and" in str(e.value)  # not "unset HF_HUB_OFFLINE": it is not set
    fill(tmp_path / "w", COURSE)
    assert hub.download(REPO, tmp_path / "w", progress=False) == tmp_path / "w"


def test_offline_flag_set_after_import_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    fake = FakeHub(monkeypatch)
    with pytest.raises(hub.WeightsUnavailable, match=r"Connect to the internet \(and unset HF_HUB_OFFLINE\)"):
        hub.download(REPO, tmp_path / "w", progress=False)
    assert fake.listed == 0


# ---- a local folder instead of a repository id ----------------------------------------------------

def test_local_folder_is_returned_as_is(tmp_path, monkeypatch):
    fake = FakeHub(monkeypatch)
    fill(tmp_path / "ckpt", COURSE)
    assert hub.download(tmp_path / "ckpt") == tmp_path / "ckpt"
    assert hub.download(str(tmp_path / "ckpt")) == tmp_path / "ckpt"
    assert fake.listed == 0 and fake.downloads == []


def test_local_single_file_checkpoint_without_index(tmp_path):
    fill(tmp_path / "one", ["config.json", "model.safetensors"])
    assert hub.download(str(tmp_path / "one")) == tmp_path / "one"


def test_local_folder_lists_everything_missing(tmp_path):
    fill(tmp_path / "part", ["model.safetensors.index.json", "model-00000-of-00002.safetensors"])
    with pytest.raises(hub.IncompleteCheckpoint) as e:
        hub.download(tmp_path / "part")
    msg = str(e.value)
    for missing in ("config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        assert missing in msg
    assert "model-00000-of-00002.safetensors" not in msg
    fill(tmp_path / "empty", ["config.json"])
    with pytest.raises(hub.IncompleteCheckpoint, match=r"\*\.safetensors weights"):
        hub.download(tmp_path / "empty")
    fill(tmp_path / "noorig", COURSE)
    with pytest.raises(hub.IncompleteCheckpoint, match="original/config.json"):
        hub.download(tmp_path / "noorig", include_original=True)


def test_a_folder_that_is_no_checkpoint_says_what_to_pass_instead(tmp_path):
    """A run's folder, its state, a folder of checkpoints, a folder of something else: no 'finish the download'."""
    run = tmp_path / "runs" / "chat"
    fill(run / "model", ["config.json", "model.safetensors"])
    (run / "state").mkdir()
    (run / "state" / "train_state.json").write_text("{}")
    with pytest.raises(hub.IncompleteCheckpoint) as e:
        hub.download(run)
    assert str(e.value) == f"{run} holds no checkpoint itself, but {run / 'model'} does: pass that folder"
    with pytest.raises(hub.IncompleteCheckpoint) as e:
        hub.download(run / "state")
    assert str(e.value) == (f"{run / 'state'} is a training state, the folder a run resumes from, not a model: "
                            f"its run's model is {run / 'model'}: pass that")
    shutil.rmtree(run / "model")
    with pytest.raises(hub.IncompleteCheckpoint, match="has no model folder to chat with"):
        hub.download(run / "state")
    fill(tmp_path / "two" / "a", ["config.json", "model.safetensors"])
    fill(tmp_path / "two" / "b", ["config.json", "model.safetensors"])
    with pytest.raises(hub.IncompleteCheckpoint, match=r"but .*a and .*b do: pass one of them"):
        hub.download(tmp_path / "two")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("not weights")
    with pytest.raises(hub.IncompleteCheckpoint, match=r"holds no checkpoint \(no config.json, no \*\.safetensors\)"):
        hub.download(tmp_path / "notes")
    fill(tmp_path / "begun", ["model.safetensors.index.json", "model-00000-of-00002.safetensors"])
    with pytest.raises(hub.IncompleteCheckpoint, match="Finish the download"):  # a download begun: finish it
        hub.download(tmp_path / "begun")
    fill(tmp_path / "pickled", ["config.json", "pytorch_model.bin"])  # not "finish the download": it never ends
    with pytest.raises(hub.IncompleteCheckpoint, match=re.escape("holds its weights only as pickle files "
                                                                 "(pytorch_model.bin), which the course never loads")):
        hub.download(tmp_path / "pickled")
    fill(tmp_path / "pickled", ["model.safetensors.index.json"])  # a safetensors download begun beside them
    with pytest.raises(hub.IncompleteCheckpoint, match="Finish the download"):
        hub.download(tmp_path / "pickled")
    # What to run again: the folder's own download, with --original if that is what is missing ...
    with pytest.raises(hub.IncompleteCheckpoint, match=re.escape(
            f"`python -m gptoss_edu download REPO_ID --local-dir {tmp_path / 'begun'}` on the command line")):
        hub.download(tmp_path / "begun")
    fill(tmp_path / "orig", ["config.json", "model.safetensors", "original/config.json"])
    with pytest.raises(hub.IncompleteCheckpoint, match=re.escape(f"--local-dir {tmp_path / 'orig'} --original`")):
        hub.check_local(tmp_path / "orig", include_original=True)
    # ... and for the Hugging Face cache's snapshot, its repository into the cache, not REPO_ID into the snapshot.
    snapshot = tmp_path / "hub" / "models--openai--gpt-oss-120b" / "snapshots" / "abc"
    fill(snapshot, ["model.safetensors.index.json", "model-00000-of-00002.safetensors"])
    with pytest.raises(hub.IncompleteCheckpoint, match=re.escape(
            "(download('openai/gpt-oss-120b') in Python, `python -m gptoss_edu download openai/gpt-oss-120b` on")):
        hub.check_local(snapshot)


def test_a_course_path_given_from_another_folder_is_found_and_named(tmp_path, monkeypatch, capsys):
    """`chat --model data/tiny-gpt-oss` from a terminal in notebooks/: the course's folder has it; say where."""
    from gptoss_edu.env import REPO

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.HubError) as e:
        hub.download("data/tiny-gpt-oss")
    assert str(e.value).startswith(f"there is no 'data/tiny-gpt-oss' in {tmp_path} (a command reads paths from the "
                                   f"folder it runs in), but the course's folder has one: pass "
                                   f"{REPO / 'data' / 'tiny-gpt-oss'}, or run the command from {REPO}")
    assert main(["student"]) == 2
    assert f"there is no 'notebooks' in {tmp_path}" in capsys.readouterr().err
    assert not (tmp_path / "student").exists()

def test_local_path_that_does_not_exist(tmp_path):
    with pytest.raises(hub.IncompleteCheckpoint, match="is not a folder"):
        hub.download(str(tmp_path / "nowhere"))
    with pytest.raises(hub.IncompleteCheckpoint, match="is not a folder"):
        hub.download("./weights/gpt-oss-20b")


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'"weight_map"', b"\xff\xfe\x00 not text",
                                     b'{"weight_map": {"a": 5}}', b'{"weight_map": {}}'])
def test_damaged_index_is_named(tmp_path, content):
    # Valid JSON of the wrong shape, or bytes that are not text, used to end in a traceback.
    fill(tmp_path / "bad", ["config.json", "model-00000-of-00002.safetensors"])
    (tmp_path / "bad" / "model.safetensors.index.json").write_bytes(content)
    with pytest.raises(hub.IncompleteCheckpoint, match="model.safetensors.index.json"):
        hub.download(tmp_path / "bad")


# ---- the real listing function, the Hugging Face cache, and errors while talking to the Hub ----------

def test_listing_reads_sizes_of_large_files_from_lfs(monkeypatch):
    from huggingface_hub.hf_api import RepoFile, RepoFolder

    tree = [RepoFile(path="config.json", size=1806, oid="a"),
            RepoFile(path="model-00000-of-00002.safetensors", size=134, oid="b",
                     lfs={"size": 4_625_000_000, "oid": "c" * 64, "pointerSize": 134}),
            RepoFolder(path="original", oid="d")]
    asked = []

    def list_repo_tree(self, repo_id, recursive=False, revision=None, **kw):
        asked.append((repo_id, recursive, revision))
        return iter(tree)

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_tree", list_repo_tree)
    assert hub.list_repo_files(REPO, "main") == [("config.json", 1806),
                                                 ("model-00000-of-00002.safetensors", 4_625_000_000)]
    assert asked == [(REPO, True, "main")]


def test_resume_into_the_hugging_face_cache(tmp_path, monkeypatch):
    """Without local_dir the files go to the library's cache; cached files of the right size count as there."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    fill(tmp_path / "snap", ["config.json", "model-00000-of-00002.safetensors"])
    fill(tmp_path / "snap", ["model-00001-of-00002.safetensors"], sizes={})  # a wrong size: not there
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo_id, name, revision=None: str(tmp_path / "snap" / name)
                        if (tmp_path / "snap" / name).exists() else None)
    FakeHub(monkeypatch)
    plan = hub.plan_download(REPO)
    assert plan.target == tmp_path / "hub"
    assert plan.present == ["config.json", "model-00000-of-00002.safetensors"]
    assert plan.needed_bytes == plan.total_bytes - 1_806 - 4_625 * 10**6


def test_cached_snapshot_finds_a_download_made_before_without_asking_the_hub(tmp_path, monkeypatch):
    """Notebook 01 takes GPT-2 from the cache offline: the snapshot counts only when every file asked for is in it."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("went online"))
    repo = tmp_path / "hub" / "models--openai-community--gpt2"
    assert hub.cached_snapshot("openai-community/gpt2", ["config.json"]) is None  # nothing cached
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snapshot = repo / "snapshots" / "0123abcd"
    fill(snapshot, ["config.json", "onnx/decoder.onnx"])
    assert hub.cached_snapshot("openai-community/gpt2", ["config.json", "model.safetensors"]) is None  # half there
    fill(snapshot, ["model.safetensors"])
    for names in (["config.json", "model.safetensors"], ["onnx/decoder.onnx", "config.json"]):
        assert hub.cached_snapshot("openai-community/gpt2", names) == snapshot
    assert hub.cached_snapshot("openai-community/gpt2", ["config.json"], revision="other") is None
    assert hub.cached_snapshot("openai-community/gpt2", []) is None
    assert hub.cached_snapshot("someone/else", ["config.json"]) is None


def test_hub_server_error_falls_back_to_disk(tmp_path, monkeypatch):
    def down(repo_id, revision=None):
        raise hf_errors.HfHubHTTPError("503 Service Unavailable", response=http_response(503, repo_id))

    FakeHub(monkeypatch)
    monkeypatch.setattr(hub, "list_repo_files", down)
    with pytest.raises(hub.WeightsUnavailable, match="answered with an error"):
        hub.download(REPO, tmp_path / "w", progress=False)
    fill(tmp_path / "w", COURSE)
    assert hub.download(REPO, tmp_path / "w", progress=False) == tmp_path / "w"


def test_connection_lost_during_the_download_says_what_is_kept_and_what_to_run(tmp_path, monkeypatch):
    import httpx2

    def cut(repo_id, **kw):
        raise httpx2.ReadTimeout("timed out")

    FakeHub(monkeypatch)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", cut)
    # huggingface_hub deletes the file it was fetching when it fails: only finished files are kept.
    with pytest.raises(hub.HubError, match="the files it finished are kept .* run the download again .* to fetch the rest"):
        hub.download(REPO, tmp_path / "w", progress=False)


@pytest.mark.parametrize("error, kind, says", [
    (lambda: hf_errors.HfHubHTTPError("503 Service Unavailable", response=http_response(503, REPO)), hub.HubError,
     "answered the download .*503.* finished are kept .* wait a little, then run the download again"),
    (lambda: OSError(errno.ENOSPC, "No space left on device"), hub.NotEnoughDiskSpace,
     "filled up during the download .*it needs 12.03 GiB in all.* finished are kept.*: free some space there, then run the"),
    (lambda: OSError(errno.EDQUOT, "Disk quota exceeded"), hub.NotEnoughDiskSpace,
     "disk quota was used up during the download .*it needs 12.03 GiB in all.* finished are kept.*: free some space in "
     "your account, then run the"),
    (lambda: PermissionError(errno.EACCES, "Permission denied"), hub.HubError,
     "could not write to .*Permission denied.* finished are kept.*: make the folder writable, then run the download "
     "again .*; or download elsewhere with --local-dir DIR"),
])
def test_a_refusal_or_a_full_disk_during_the_download_says_what_to_do(tmp_path, monkeypatch, error, kind, says):
    """Not only lost connections: every way the fetch can stop half-way is a HubError that says what to run."""
    def fail(repo_id, **kw):
        raise error()

    FakeHub(monkeypatch)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    with pytest.raises(kind, match=says) as caught:
        hub.download(REPO, tmp_path / "w", progress=False)
    assert isinstance(caught.value.__cause__, OSError)  # the library's error stays attached for a traceback
    # The advice names this repository and folder: without them the command fetches gpt-oss-20b into the cache.
    assert (f"download({REPO!r}, local_dir={str(tmp_path / 'w')!r}) in Python, `python -m gptoss_edu download {REPO} "
            f"--local-dir {tmp_path / 'w'}` on the command line" in str(caught.value))
    # The command line prints the message and exits with status 2, as for every other HubError.
    assert main(["download", REPO, "--local-dir", str(tmp_path / "w")]) == 2


def test_a_refused_token_says_to_fix_the_token_not_to_connect(tmp_path, monkeypatch):
    """A stale HF_TOKEN is refused (401) even for a public repository: "Connect to the internet" misled."""
    def refused(repo_id, revision=None):
        raise hf_errors.HfHubHTTPError("401 Unauthorized: Invalid credentials in Authorization header",
                                       response=http_response(401, repo_id))

    FakeHub(monkeypatch)
    monkeypatch.setattr(hub, "list_repo_files", refused)
    with pytest.raises(hub.WeightsUnavailable, match="refused the access token") as e:
        hub.download(REPO, tmp_path / "w", progress=False)
    assert "unset HF_TOKEN" in str(e.value) and "Connect to the internet" not in str(e.value)
    fill(tmp_path / "w", COURSE)  # the weights on disk still do
    assert hub.download(REPO, tmp_path / "w", progress=False) == tmp_path / "w"


def test_an_unreachable_hub_behind_a_proxy_names_the_proxy(tmp_path, monkeypatch):
    """A proxy left set from another network: the learner saw 'could not be reached' and no word of the proxy."""
    import httpx2
    import urllib.request

    def refused(repo_id, revision=None):
        raise httpx2.ConnectError("[Errno 111] Connection refused")

    FakeHub(monkeypatch)
    monkeypatch.setattr(hub, "list_repo_files", refused)
    for scheme, variable, proxy in (("https", "HTTPS_PROXY", "http://127.0.0.1:9"),
                                    ("all", "ALL_PROXY", "socks5://127.0.0.1:9")):  # for every protocol
        monkeypatch.setattr(urllib.request, "getproxies", lambda: {scheme: proxy})
        monkeypatch.setenv(variable, proxy)
        with pytest.raises(hub.WeightsUnavailable, match=rf"through the proxy {re.escape(proxy)} \(set in {variable}"):
            hub.download(REPO, tmp_path / "w", progress=False)
        monkeypatch.delenv(variable)
    monkeypatch.setattr(urllib.request, "getproxies", lambda: {})
    with pytest.raises(hub.WeightsUnavailable) as e:
        hub.download(REPO, tmp_path / "w", progress=False)
    assert "proxy" not in str(e.value)


def test_a_cache_moved_by_hf_hub_cache_is_named_in_the_advice(tmp_path, monkeypatch):
    """HF_HUB_CACHE wins over HF_HOME, so "set HF_HOME" could not help a learner who had set it."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(blocker / "hub"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert "set HF_HOME to a folder" in hub.cache_problem()
    monkeypatch.setenv("HF_HUB_CACHE", str(blocker / "hub"))
    assert "set HF_HUB_CACHE to a folder" in hub.cache_problem()


def test_a_learners_progress_bar_setting_is_left_alone_without_a_warning(tmp_path, monkeypatch):
    """HF_HUB_DISABLE_PROGRESS_BARS set: asking the library for the other setting printed a UserWarning."""
    import warnings

    FakeHub(monkeypatch)
    for setting, progress in ((True, True), (False, False)):
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_PROGRESS_BARS", setting)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            hub.download(REPO, tmp_path / f"w{setting}", progress=progress)


def test_progress_bars_are_restored(tmp_path, monkeypatch):
    from huggingface_hub.utils import are_progress_bars_disabled

    seen = []
    fake = FakeHub(monkeypatch)
    real = fake.snapshot_download

    def watch(*a, **kw):
        seen.append(are_progress_bars_disabled())
        return real(*a, **kw)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", watch)
    before = are_progress_bars_disabled()
    hub.download(REPO, tmp_path / "a", progress=False)
    assert are_progress_bars_disabled() == before  # after each call: two calls can undo each other's slip
    hub.download(REPO, tmp_path / "b", progress=True)
    assert are_progress_bars_disabled() == before
    # HF_HUB_DISABLE_PROGRESS_BARS in the environment wins over the argument, as the library intends.
    env = constants.HF_HUB_DISABLE_PROGRESS_BARS
    assert seen == ([True, False] if env is None else [env, env])


def test_an_unreachable_hub_is_known_at_once_without_retries(tmp_path, monkeypatch):
    """No name resolution (a machine without internet): the disk is checked at once, no retries."""
    import socket

    import urllib.parse
    import urllib.request

    monkeypatch.undo()  # the real probe, with the connection faked
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(urllib.request, "getproxies", lambda: {})
    endpoint = urllib.parse.urlparse(constants.ENDPOINT)
    host, port = endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)
    asked = []

    def no_name(name, port, *args, **kwargs):
        asked.append((name, port))
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_name)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("connected without an address"))
    monkeypatch.setattr(hub, "list_repo_files", lambda *a, **k: pytest.fail("the Hub was asked anyway"))
    with pytest.raises(hub.HubError) as e:
        hub.download("openai/gpt-oss-20b", tmp_path / "w", progress=False)
    assert f"the Hub could not be reached ({host}:{port}: [Errno -2] Name or service not known)" in str(e.value)
    assert asked == [(host, port)]
    # Behind a proxy (an environment variable, or the system's settings) a direct connection proves nothing.
    for proxies in ({"https": "http://proxy:3128"}, {"all": "socks5://proxy:1080"}):
        monkeypatch.setattr(urllib.request, "getproxies", lambda: proxies)
        assert hub._hub_unreachable() is None and len(asked) == 1


def test_the_hub_probe_stops_waiting_for_a_silent_resolver_and_tries_each_address(monkeypatch):
    """A name lookup that never answers is an unreachable Hub after PROBE_SECONDS; the first address that answers will do."""
    import socket
    import threading
    import time

    monkeypatch.undo()
    import urllib.request

    monkeypatch.setattr(urllib.request, "getproxies", lambda: {})
    monkeypatch.setattr(hub, "PROBE_SECONDS", 0.2)
    release = threading.Event()
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: release.wait(30) and [])
    start = time.perf_counter()
    reason = hub._hub_unreachable()
    release.set()
    assert time.perf_counter() - start < 5
    assert reason is not None and "the name lookup gave no answer in 0.2 s" in reason

    infos = [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:db8::1", 443, 0, 0)),
             (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", 443)),
             (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", 443))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: infos)
    tried = []

    class Connection:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def connect(address, timeout=None):
        tried.append((address, timeout))
        if address[0] == "2001:db8::1":
            raise OSError(101, "Network is unreachable")
        return Connection()

    monkeypatch.setattr(socket, "create_connection", connect)
    assert hub._hub_unreachable() is None
    assert [a for a, _ in tried] == [("2001:db8::1", 443), ("192.0.2.1", 443)]
    assert all(0 < t <= 0.2 for _, t in tried)  # what is left of one PROBE_SECONDS for all of them

    def refused(address, timeout=None):
        tried.append((address, timeout))
        raise OSError(111, "Connection refused")

    tried.clear()
    monkeypatch.setattr(socket, "create_connection", refused)
    assert hub._hub_unreachable().endswith(": [Errno 111] Connection refused")
    # Each address once (getaddrinfo repeats one per socket type).
    assert [a for a, _ in tried] == [("2001:db8::1", 443), ("192.0.2.1", 443)]

    def silent(address, timeout=None):  # a network that drops what it is sent: each try waits its time out
        tried.append((address, timeout))
        time.sleep(timeout)
        raise TimeoutError("timed out")

    tried.clear()
    monkeypatch.setattr(socket, "create_connection", silent)
    monkeypatch.setattr(hub, "PROBE_SECONDS", 0.5)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", (f"192.0.2.{i}", 443)) for i in range(1, 5)])
    start = time.perf_counter()
    assert hub._hub_unreachable().endswith("timed out")
    assert time.perf_counter() - start < 1.5  # one PROBE_SECONDS in all, not 4 x 0.5 s

    def first_silent(address, timeout=None):  # a broken IPv6 route before an address that answers
        if address[0] == "2001:db8::1":
            return silent(address, timeout)
        return Connection()

    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: infos)
    monkeypatch.setattr(socket, "create_connection", first_silent)
    assert hub._hub_unreachable() is None  # the silent one took its share, not the whole deadline


# ---- found by mutation testing: sizes, offline spellings and revisions, local paths, dry runs ----------

def test_a_file_larger_than_listed_is_fetched_again(tmp_path, monkeypatch):
    # Another size than listed means another file (a damaged copy, another revision), larger as much as smaller.
    FakeHub(monkeypatch)
    fill(tmp_path / "w", ["config.json"], sizes={"config.json": dict(REAL_FILES)["config.json"] + 100})
    plan = hub.plan_download(REPO, tmp_path / "w")
    assert "config.json" not in plan.present and plan.needed_bytes == plan.total_bytes


def test_the_plan_measures_free_space_where_the_files_go(tmp_path, monkeypatch):
    # "It fits" is about the disk of local_dir, not the cache's or the working folder's.
    FakeHub(monkeypatch)
    asked = []
    monkeypatch.setattr(shutil, "disk_usage", lambda p: asked.append(str(p)) or shutil._ntuple_diskusage(9, 8, 7))
    (tmp_path / "w").mkdir()
    plan = hub.plan_download(REPO, tmp_path / "w")
    assert plan.free_bytes == 7 and asked == [str(tmp_path / "w")]


def test_a_zero_byte_file_is_listed_with_its_size():
    # An empty file on the Hub has size 0, which is a size (None would mean unknown).
    chosen = hub.select_files([("config.json", 10), ("generation_config.json", 0), ("model.safetensors", 100)])
    assert ("generation_config.json", 0) in chosen


def test_the_download_checks_what_the_library_left(tmp_path, monkeypatch):
    # snapshot_download returning is no proof: a shard the index names but the folder lacks is reported.
    fake = FakeHub(monkeypatch)
    real = fake.snapshot_download

    def lossy(*args, **kwargs):
        folder = real(*args, **kwargs)
        (tmp_path / "w" / "model-00001-of-00002.safetensors").unlink()
        return folder

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lossy)
    with pytest.raises(hub.IncompleteCheckpoint, match="model-00001-of-00002.safetensors"):
        hub.download(REPO, tmp_path / "w", progress=False)


@pytest.mark.parametrize("value", ["true", "YES", "On", "1"])
def test_offline_flag_in_the_spellings_huggingface_hub_accepts(tmp_path, monkeypatch, value):
    # Set after huggingface_hub was imported, the variable must still keep the download off the network.
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    fake = FakeHub(monkeypatch)
    with pytest.raises(hub.WeightsUnavailable, match="offline mode is on"):
        hub.download(REPO, tmp_path / "w", progress=False)
    assert fake.listed == 0


def test_offline_with_original_checks_original_too(tmp_path, monkeypatch, offline):
    FakeHub(monkeypatch)
    fill(tmp_path / "w", COURSE)
    with pytest.raises(hub.WeightsUnavailable, match="original/config.json"):
        hub.download(REPO, tmp_path / "w", include_original=True, progress=False)


def test_offline_cache_lookup_asks_for_the_requested_revision(tmp_path, monkeypatch, offline):
    # A cached main must not stand in for another revision.
    snapshot = tmp_path / "cache" / "snapshots" / "abc"
    fill(snapshot, COURSE)
    revisions = []

    def cached(repo_id, *, revision=None, local_files_only=False, **kwargs):
        revisions.append(revision)
        if revision != "main":
            raise hf_errors.LocalEntryNotFoundError("not cached")
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", cached)
    with pytest.raises(hub.WeightsUnavailable):
        hub.download(REPO, revision="v2", progress=False)
    assert revisions == ["v2"]


def test_relative_and_home_paths_are_folders_not_repository_ids(tmp_path, monkeypatch):
    # "./ckpt" and "~/ckpt" have one slash, like "owner/name", and are never sent to the Hub.
    fake = FakeHub(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for spelled in ("./ckpt", "~/ckpt"):
        with pytest.raises(hub.IncompleteCheckpoint, match="is not a folder"):
            hub.download(spelled)
    assert fake.listed == 0


def test_metal_weights_are_checked_when_asked_for(tmp_path):
    fill(tmp_path / "ck", COURSE)
    (tmp_path / "ck" / "metal").mkdir()  # an empty one: a copy cut short
    with pytest.raises(hub.IncompleteCheckpoint, match="metal/"):
        hub.check_local(tmp_path / "ck", include_metal=True)
    fill(tmp_path / "ck", ["metal/model.bin"])
    assert hub.check_local(tmp_path / "ck", include_metal=True) == tmp_path / "ck"


def test_an_unknown_revision_is_named(tmp_path, monkeypatch):
    # Not a generic Hub error followed by a look at the disk: the revision is wrong, and the message says so.
    def no_revision(repo_id, revision=None):
        raise hf_errors.RevisionNotFoundError("404 revision", response=http_response(404, repo_id))

    fake = FakeHub(monkeypatch)
    monkeypatch.setattr(hub, "list_repo_files", no_revision)
    with pytest.raises(hub.HubError, match="has no revision 'v9': pass an existing branch"):
        hub.download(REPO, tmp_path / "w", revision="v9", progress=False)
    assert fake.downloads == []


@pytest.mark.parametrize("go_offline", [False, True])
def test_a_malformed_repository_id_is_a_clear_error_online_and_offline(tmp_path, monkeypatch, capsys, go_offline):
    fake = FakeHub(monkeypatch)
    if go_offline:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for typo in ("openai/gpt-oss-20b ", "gpt oss"):
        with pytest.raises(hub.HubError, match=f"{typo!r} is neither a folder here nor a Hub repository id"):
            hub.download(typo, tmp_path / "w", progress=False)
    assert main(["download", "openai/gpt-oss 20b", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "neither a folder here nor a Hub repository id" in err and "Traceback" not in err
    assert fake.listed == 0 and fake.downloads == []


def test_dry_run_exit_status_says_whether_it_fits(tmp_path, monkeypatch, capsys):
    # Scripts read the exit status: 0 only when the download fits; and a dry run fetches nothing.
    needed = sum(size for name, size in REAL_FILES if name in COURSE)
    fake = FakeHub(monkeypatch, free=needed - 1)
    assert main(["download", REPO, "--local-dir", str(tmp_path / "w"), "--dry-run"]) == 1
    assert "it does NOT fit" in capsys.readouterr().out
    fake.free = needed
    assert main(["download", REPO, "--local-dir", str(tmp_path / "w"), "--dry-run"]) == 0
    assert "it fits" in capsys.readouterr().out
    assert fake.downloads == [] and not (tmp_path / "w").exists()


def test_dry_run_with_original_counts_original(tmp_path, monkeypatch, capsys):
    # --original adds the 13.8 GB original/ folder: a plan without it would promise room it does not have.
    FakeHub(monkeypatch)
    assert main(["download", REPO, "--local-dir", str(tmp_path / "w"), "--dry-run", "--original"]) == 0
    assert f"{REPO}: {len(COURSE) + 3} files" in capsys.readouterr().out


def test_importing_the_hub_does_not_import_torch():
    # `download` starts at once: the index reader (in checkpoint, which needs torch) is imported only when used.
    import subprocess
    import sys

    code = "import sys, gptoss_edu.hub; assert 'torch' not in sys.modules, 'torch was imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_local_dir_that_is_a_file_is_refused_before_anything_is_fetched(tmp_path, monkeypatch):
    """It once went as far as writing, then advised making 'the folder' writable."""
    fake = FakeHub(monkeypatch)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(hub.HubError, match=re.escape(f"{tmp_path / 'notes.txt'} is a file, not a folder: give a "
                                                     "folder to download into")):
        hub.download(REPO, tmp_path / "notes.txt", progress=False)
    assert fake.listed == 0 and fake.downloads == [] and (tmp_path / "notes.txt").read_text() == "mine"


# ---- what a flaky laptop meets: killed downloads, a folder already in use, Ctrl-C ------------------

def test_files_that_killed_downloads_left_are_counted_and_named(tmp_path, monkeypatch, capsys):
    """huggingface_hub removes a file it did not finish when it fails, not when its process is killed
    (a closed terminal, a restarted notebook kernel): each try leaves a *.incomplete of its own."""
    needed = sum(size for name, size in REAL_FILES if name in COURSE)
    fake = FakeHub(monkeypatch, free=needed - 1)
    partial = tmp_path / "w" / ".cache" / "huggingface" / "download"
    partial.mkdir(parents=True)
    for i in range(3):
        (partial / f"abc.0123456{i}.incomplete").write_bytes(b"x" * 1024 * (i + 1))
    plan = hub.plan_download(REPO, tmp_path / "w")
    assert [n for _, n in plan.unfinished] == [1024, 2048, 3072]
    assert "3 unfinished files of downloads that were killed hold 6.0 KiB" in str(plan)
    with pytest.raises(hub.NotEnoughDiskSpace, match=r"3 unfinished files .* hold 6\.0 KiB \(.*abc\.01234560\."
                                                     r"incomplete, .*, \.\.\.\): unless a download of .* is running"):
        hub.download(REPO, tmp_path / "w", progress=False)
    assert fake.downloads == [] and len(list(partial.iterdir())) == 3  # reported, never deleted behind one's back
    # In the Hugging Face cache they sit among the repository's blobs.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    blobs = tmp_path / "hub" / "models--openai--gpt-oss-20b" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / "f00d.89abcdef.incomplete").write_bytes(b"x" * 10)
    (blobs / "f00d.incomplete").write_bytes(b"x" * 10)  # an older huggingface_hub's, which it resumes: not counted
    assert hub.unfinished_files(REPO) == [blobs / "f00d.89abcdef.incomplete"]
    assert hub.unfinished_files("someone/else") == []
    fake.free = 10**15
    assert "unfinished" not in str(hub.plan_download(REPO, tmp_path / "elsewhere"))


def test_an_online_download_never_writes_into_a_folder_holding_another_model(tmp_path, monkeypatch, capsys):
    """Offline such a folder was refused, online huggingface_hub overwrote its config.json and added shards."""
    fake = FakeHub(monkeypatch)
    mine = tmp_path / "my-model"
    shutil.copytree(Path(__file__).resolve().parents[1] / "data" / "tiny-gpt-oss", mine)
    before = {p.name: p.read_bytes() for p in mine.iterdir() if p.is_file()}
    with pytest.raises(hub.HubError, match=f"{re.escape(str(mine))} already holds another model than {REPO} .*"
                                           "num_hidden_layers 4.*give openai/gpt-oss-20b a --local-dir of its own"):
        hub.download(REPO, mine, progress=False)
    assert main(["download", REPO, "--local-dir", str(mine), "--dry-run"]) == 2
    assert "already holds another model" in capsys.readouterr().err
    # A repository the course does not know: a config.json huggingface_hub did not write there is someone else's.
    with pytest.raises(hub.HubError, match="its config.json was not downloaded there by huggingface_hub"):
        hub.download("someone/other-model", mine, progress=False)
    assert fake.downloads == [] and {p.name: p.read_bytes() for p in mine.iterdir() if p.is_file()} == before
    # Its own earlier download (huggingface_hub's record beside each file) is resumed, as before.
    record = tmp_path / "theirs" / ".cache" / "huggingface" / "download"
    record.mkdir(parents=True)
    (record / "config.json.metadata").write_text("commit\netag\n0\n")
    (tmp_path / "theirs" / "config.json").write_text("{}")
    assert hub._foreign_checkpoint("someone/other-model", tmp_path / "theirs") is None


def test_a_dry_run_into_a_file_is_refused_as_the_download_is(tmp_path, monkeypatch, capsys):
    FakeHub(monkeypatch)
    (tmp_path / "afile").write_text("x")
    assert main(["download", REPO, "--local-dir", str(tmp_path / "afile"), "--dry-run"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    # A folder that cannot be made: the dry run says so, as the download refuses it (it said "it fits").
    assert main(["download", REPO, "--local-dir", str(tmp_path / "afile" / "w"), "--dry-run"]) == 1
    assert "it cannot be written there" in capsys.readouterr().out


@pytest.mark.parametrize("error, says", [
    (lambda: __import__("hf_xet").XetAuthenticationError("token refresh failed: 401"),
     "the Hub's storage refused the download .*401.*: log in \\(`hf auth login`"),
    (lambda: __import__("hf_xet").XetObjectNotFoundError("no such xorb"),
     "the Hub's storage could not serve a file .*no such xorb.* wait a little, then run the download again"),
    (lambda: OSError("connection reset inside the storage client"),  # no errno: not the disk's permissions
     "the download of openai/gpt-oss-20b stopped \\(OSError: connection reset.*\\); the files it finished are kept"),
])
def test_the_hubs_storage_errors_are_not_taken_for_the_disks(tmp_path, monkeypatch, error, says):
    """hf_xet's errors are a PermissionError and a FileNotFoundError: they said 'make the folder writable'."""
    pytest.importorskip("hf_xet")

    def fail(repo_id, **kw):
        raise error()

    FakeHub(monkeypatch)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    with pytest.raises(hub.HubError, match=says) as caught:
        hub.download(REPO, tmp_path / "w", progress=False)
    assert "make the folder writable" not in str(caught.value)


def test_ctrl_c_during_a_download_says_what_is_kept_and_what_to_run(tmp_path, monkeypatch, capsys):
    def interrupted(repo_id, **kw):
        raise KeyboardInterrupt

    FakeHub(monkeypatch)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", interrupted)
    assert main(["download", REPO, "--local-dir", str(tmp_path / "w")]) == 130
    assert "download: interrupted; the files it finished are kept" in capsys.readouterr().err


def test_a_listing_the_hub_never_answers_gives_up_and_uses_what_is_on_disk(tmp_path, monkeypatch):
    """A network that opens a connection and then says nothing held `download` (and chat, notebook 12) for ever."""
    import time

    FakeHub(monkeypatch)
    monkeypatch.setattr(hub, "list_repo_files", lambda repo_id, revision=None: time.sleep(30))
    monkeypatch.setattr(hub, "LIST_SECONDS", 0.5)
    t0 = time.perf_counter()
    with pytest.raises(hub.WeightsUnavailable, match=f"the Hub did not answer the listing of {REPO} in 0.5 s"):
        hub.download(REPO, tmp_path / "w", progress=False)
    assert time.perf_counter() - t0 < 10
    # With the weights already there, they are used.
    done = tmp_path / "done"
    shutil.copytree(Path(__file__).resolve().parents[1] / "data" / "tiny-gpt-oss", done)
    monkeypatch.setattr(hub, "_another_model", lambda repo_id, folder: None)
    assert hub.download(REPO, done, progress=False) == done


def test_hub_problem_says_why_the_hub_cannot_answer_and_never_waits_long(monkeypatch):
    """Notebook 01's check: it opened a connection and called that online, then waited for ever on the download."""
    import time

    from huggingface_hub import HfApi

    asked = []
    monkeypatch.setattr(HfApi, "model_info", lambda self, repo_id, timeout=None: asked.append((repo_id, timeout)))
    assert hub.hub_problem("openai-community/gpt2") is None and asked == [("openai-community/gpt2", 10.0)]
    monkeypatch.setattr(HfApi, "model_info", lambda self, repo_id, timeout=None: time.sleep(30))
    t0 = time.perf_counter()
    assert hub.hub_problem("openai-community/gpt2", seconds=0.5) == ("the Hub did not answer about "
                                                                   "openai-community/gpt2 in 0.5 s")
    assert time.perf_counter() - t0 < 5

    def refused(self, repo_id, timeout=None):
        raise ConnectionError("connection reset")

    monkeypatch.setattr(HfApi, "model_info", refused)
    assert hub.hub_problem("openai-community/gpt2") == "the Hub could not be reached (ConnectionError)"

    def missing(self, repo_id, timeout=None):
        raise hf_errors.RepositoryNotFoundError("404", response=http_response(404, repo_id))

    monkeypatch.setattr(HfApi, "model_info", missing)
    assert hub.hub_problem("someone/nothing") == ("the Hub answered about someone/nothing with an error "
                                                  "(RepositoryNotFoundError)")
    monkeypatch.setattr(hub, "_hub_unreachable", lambda: "huggingface.co:443: timed out")
    assert hub.hub_problem() == "the Hub could not be reached (huggingface.co:443: timed out)"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_problem() == "offline mode is on (HF_HUB_OFFLINE=1)"


def test_a_folder_that_cannot_be_written_is_said_before_the_download_with_what_to_do(tmp_path, monkeypatch, capsys):
    """A read-only cache (a class's shared HF_HOME) went as far as promising the download, then said 'the files it
    finished are kept' of none; a file where a folder is needed is refused as well (root may write anywhere else)."""
    fake = FakeHub(monkeypatch)
    (tmp_path / "file").write_text("")
    with pytest.raises(hub.HubError, match=r"cannot be downloaded into .*file/w .*is a file.*give --local-dir a folder "
                                           "you may write"):
        hub.download(REPO, tmp_path / "file" / "w", progress=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "file" / "hub"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)  # set, it would be the variable to name
    with pytest.raises(hub.HubError, match=r"is a file.*: set HF_HOME to a folder you may write, or download "
                                           "elsewhere with --local-dir DIR"):
        hub.download(REPO, progress=True)
    assert capsys.readouterr().out == ""  # no plan printed, no download tried
    assert fake.downloads == []
    assert "set HF_HOME" in hub.cache_problem()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert hub.cache_problem() is None


def test_a_complete_read_only_copy_is_used_as_it_is_and_an_incomplete_one_refused(tmp_path, monkeypatch, capsys):
    """A class's shared copy: every file there, the folder read-only. huggingface_hub was handed it anyway, and
    writes its bookkeeping (.cache/huggingface) into the folder, which fails there."""
    fake = FakeHub(monkeypatch)
    shared = tmp_path / "shared"
    fill(shared, COURSE)
    monkeypatch.setattr(hub, "write_problem", lambda folder: f"{folder} is read-only for you")  # root writes anywhere
    assert hub.download(REPO, shared, progress=True) == shared
    assert fake.downloads == []
    assert capsys.readouterr().out == f"{REPO}: every file is already there ({shared} is read-only for you): used " \
                                      "as it is\n"
    assert main(["download", REPO, "--local-dir", str(shared), "--dry-run"]) == 0
    assert "it fits" in capsys.readouterr().out
    (shared / "config.json").unlink()
    with pytest.raises(hub.HubError, match="cannot be downloaded into .*shared .*is read-only for you"):
        hub.download(REPO, shared, progress=False)
    assert fake.downloads == []  # nor then


def test_a_folder_on_the_way_that_may_not_be_entered_is_said_not_raised(tmp_path, monkeypatch):
    """HF_HOME under a folder this user may not enter: Path.exists raises PermissionError there (only ENOENT and the
    like are False), and write_problem raised it out of the download and notebook 01."""
    locked = tmp_path / "locked"
    unenterable(monkeypatch, locked)
    assert hub.write_problem(locked / "hf" / "hub") == f"{locked / 'hf' / 'hub'} cannot be reached (Permission denied)"


@pytest.mark.parametrize("text, kind, says", [
    ("Task error: File reconstruction error: IO Error: No space left on device (os error 28)", hub.NotEnoughDiskSpace,
     "filled up during the download .*finished are kept.*: free some space there"),
    ("Task error: IO Error: Disk quota exceeded (os error 122)", hub.NotEnoughDiskSpace, "disk quota was used up"),
    ("Task error: CAS Client Error: Request middleware error: error sending request", hub.HubError,
     "the download of openai/gpt-oss-20b stopped \\(RuntimeError: Task error: CAS.*finished are kept.*to fetch the rest"),
])
def test_a_failure_inside_hf_xet_is_said_as_the_others_are(tmp_path, monkeypatch, capsys, text, kind, says):
    """hf_xet, which fetches the shards, raises a bare RuntimeError for a full disk and for a lost connection alike:
    it escaped the download (notebook 12's `except hub.HubError` missed it; the command line printed a traceback)."""
    def fail(repo_id, **kw):
        raise RuntimeError(text)

    FakeHub(monkeypatch)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    with pytest.raises(kind, match=says):
        hub.download(REPO, tmp_path / "w", progress=False)
    assert main(["download", REPO, "--local-dir", str(tmp_path / "w")]) == 2 and "Traceback" not in capsys.readouterr().err


def test_a_busy_hub_says_wait_not_connect(tmp_path, monkeypatch):
    """A class behind one address meets the Hub's rate limit (429) while listing: "Connect to the internet" misled."""
    def limited(repo_id, revision=None):
        raise hf_errors.HfHubHTTPError("429 Too Many Requests", response=http_response(429, repo_id))

    FakeHub(monkeypatch)
    monkeypatch.setattr(hub, "list_repo_files", limited)
    with pytest.raises(hub.WeightsUnavailable, match="429 Too Many Requests.*Wait a few minutes") as e:
        hub.download(REPO, tmp_path / "w", progress=False)
    assert "Connect to the internet" not in str(e.value) and "hf auth login" in str(e.value)


def test_offline_advice_names_the_switch_that_is_on(tmp_path, monkeypatch):
    """TRANSFORMERS_OFFLINE=1 turns huggingface_hub offline too, and the advice said to unset HF_HUB_OFFLINE, which was
    not set; once unset in a running kernel, huggingface_hub still holds what it read at its import."""
    fake = FakeHub(monkeypatch)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    with pytest.raises(hub.WeightsUnavailable, match=r"offline mode is on \(TRANSFORMERS_OFFLINE=1\).*Connect to the "
                                                     r"internet \(and unset TRANSFORMERS_OFFLINE\)"):
        hub.download(REPO, tmp_path / "w", progress=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import, unset since
    with pytest.raises(hub.WeightsUnavailable, match="as it was imported.*Restart the kernel") as e:
        hub.download(REPO, tmp_path / "w", progress=False)
    assert "unset" not in str(e.value).split("offline mode is on")[1].split(")")[1] and fake.listed == 0
    # huggingface_hub's rule: a set HF_HUB_OFFLINE decides, TRANSFORMERS_OFFLINE only when it is not set.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert hub.download(REPO, tmp_path / "w", progress=False) == tmp_path / "w" and fake.listed == 1


def test_a_download_folder_that_may_not_be_entered_is_said_not_raised(tmp_path, monkeypatch):
    """HF_HOME (or --local-dir) under another user's folder: Path.exists raised PermissionError out of the plan."""
    locked = tmp_path / "locked"
    FakeHub(monkeypatch)
    unenterable(monkeypatch, locked)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(locked / "hf" / "hub"))
    with pytest.raises(hub.HubError, match=r"cannot be reached: Permission denied\).*set HF_HOME to a folder you may"):
        hub.download(REPO, progress=False)
    with pytest.raises(hub.HubError, match="cannot be reached: Permission denied.*give --local-dir a folder you may"):
        hub.download(REPO, locked / "w", progress=False)


def test_a_local_dir_named_as_the_repository_resumes_its_download(tmp_path, monkeypatch):
    """`download openai/gpt-oss-20b --local-dir openai/gpt-oss-20b` cut short: the next run took the half-filled
    folder for the model and refused it, advising the very command that had been run."""
    fake = FakeHub(monkeypatch)
    monkeypatch.chdir(tmp_path)
    fill(Path(REPO), COURSE[:4])
    assert hub.download(REPO, REPO, progress=False) == Path(REPO)
    assert fake.downloads == [COURSE] and sorted(p.name for p in Path(REPO).iterdir()) == COURSE
    with pytest.raises(hub.HubError, match="missing"):  # without local_dir, an existing folder is still the folder
        (Path(REPO) / SHARDS[0]).unlink()
        hub.download(REPO, progress=False)


def test_free_space_is_measured_where_the_blobs_land(tmp_path, monkeypatch):
    """A learner who moved the repository's cache folder to a larger disk (and linked it back) was measured on the
    cache's disk: refused with room to spare, or let through to fill the smaller disk."""
    FakeHub(monkeypatch)
    cache, big = tmp_path / "ssd" / "hub", tmp_path / "hdd"
    (big / "blobs").mkdir(parents=True)
    cache.mkdir(parents=True)
    (cache / "models--openai--gpt-oss-20b").symlink_to(big)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    free = {cache: 5 * 2**30, big / "blobs": 500 * 2**30}
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, free[Path(p).resolve()]))  # links followed
    plan = hub.plan_download(REPO)
    assert plan.free_bytes == 500 * 2**30 and plan.fits
    free[big / "blobs"] = 2**30
    assert not hub.plan_download(REPO).fits


# ---- found by mutation testing (review B): messages' numbers and quoting, selection, older partial files -------

def test_selection_is_sorted_takes_only_the_folders_named_and_says_everything_missing():
    assert hub.select_files(list(reversed(REAL_FILES))) == hub.select_files(REAL_FILES)  # sorted, whatever the order
    files = [("config.json", 1), ("model.safetensors", 2), ("originals/model.safetensors", 3), ("metal2/x.bin", 4)]
    assert hub.select_files(files, include_original=True, include_metal=True) == files[:2]
    with pytest.raises(hub.HubError, match=r"no config\.json and no \*\.safetensors weights at its root"):
        hub.select_files([("README.md", 1)])


def test_a_folder_named_like_a_shard_is_no_shard(tmp_path):
    fill(tmp_path / "ck", [n for n in COURSE if n != SHARDS[1]])
    (tmp_path / "ck" / SHARDS[1]).mkdir()
    assert hub.missing_files(tmp_path / "ck") == [SHARDS[1]]


def test_the_disk_messages_name_the_free_space_and_what_is_still_to_fetch(tmp_path, monkeypatch):
    needed = sum(s for n, s in REAL_FILES if n in COURSE)
    FakeHub(monkeypatch, free=needed // 2)
    with pytest.raises(hub.NotEnoughDiskSpace) as e:
        hub.download(REPO, tmp_path / "w", progress=False)
    assert f"needs {hub.format_bytes(needed)}, and only {hub.format_bytes(needed // 2)} are free" in str(e.value)
    # Filled up mid-way on a resume: what this run still had to fetch, not the whole checkpoint.
    fill(tmp_path / "w", SHARDS[:2])
    rest = needed - sum(dict(REAL_FILES)[n] for n in SHARDS[:2])

    def full(repo_id, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    FakeHub(monkeypatch)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", full)
    with pytest.raises(hub.NotEnoughDiskSpace, match=re.escape(f"(it needs {hub.format_bytes(rest)} in all)")):
        hub.download(REPO, tmp_path / "w", progress=False)


def test_a_read_only_file_system_during_the_download_says_to_write_elsewhere(tmp_path, monkeypatch):
    def read_only(repo_id, **kw):
        raise OSError(errno.EROFS, "Read-only file system")

    FakeHub(monkeypatch)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", read_only)
    with pytest.raises(hub.HubError, match="could not write to .*Read-only file system.*--local-dir DIR"):
        hub.download(REPO, tmp_path / "w", progress=False)


def test_the_command_advised_works_for_a_folder_with_a_space(tmp_path, monkeypatch):
    import shlex

    def cut(repo_id, **kw):
        raise ConnectionError("reset")

    FakeHub(monkeypatch)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", cut)
    where = tmp_path / "my models"
    with pytest.raises(hub.HubError) as e:
        hub.download(REPO, where, progress=False)
    command = str(e.value).split("`")[1]
    assert shlex.split(command)[-2:] == ["--local-dir", str(where)]


def test_unfinished_files_are_named_two_at_most_in_the_right_number(tmp_path, monkeypatch):
    partial = tmp_path / "w" / ".cache" / "huggingface" / "download"
    partial.mkdir(parents=True)
    (partial / "abc.01234560.incomplete").write_bytes(b"x")
    # An older huggingface_hub's partial file (<hash>.<etag>.incomplete): it resumes it, so it is not counted.
    (partial / f"abc.{'0123abcd' * 5}.incomplete").write_bytes(b"x")
    FakeHub(monkeypatch)
    plan = hub.plan_download(REPO, tmp_path / "w")
    assert plan.unfinished_note.startswith("1 unfinished file of downloads that were killed hold 1 B (")
    for i in (1, 2):
        (partial / f"abc.0123456{i}.incomplete").write_bytes(b"x")
    note = hub.plan_download(REPO, tmp_path / "w").unfinished_note
    assert "3 unfinished files" in note and "abc.01234561" in note and "abc.01234562" not in note and ", ...)" in note


def test_a_mistyped_folder_is_said_with_what_its_parent_holds(tmp_path, monkeypatch):
    """'data/tiny-gptoss' for data/tiny-gpt-oss: taken for a repository id, the message says which folder is missing."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "weights" / "tiny-gpt-oss").mkdir(parents=True)
    with pytest.raises(hub.HubError) as e:
        hub.download("weights/tiny-gptoss", progress=False)
    assert str(e.value).startswith("there is no folder weights/tiny-gptoss (weights/ holds tiny-gpt-oss), so it was "
                                   "taken for a Hub repository id, and the weights of weights/tiny-gptoss")
