"""What this machine can run of the course: packages against their pins, CPU, memory, GPU and disk.

``check_environment()`` returns an :class:`EnvironmentReport` (a list of :class:`Check` rows
that shows as a table in a notebook); ``main()`` prints the same table for
``python -m gptoss_edu.env`` (and ``run`` for ``python -m gptoss_edu doctor``) and returns 1
when any row is FAIL: a required package missing, too old or broken, its dependencies, the Python version,
the data files.
"""

from __future__ import annotations

import argparse
import html
import importlib.metadata as metadata
import importlib.util
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .memory import CUDA_CONTEXT_BYTES, disk_free, gpu_free_bytes

OK, WARN, FAIL = "OK", "WARN", "FAIL"

REPO = Path(__file__).resolve().parent.parent
GiB = 1024**3

# Below this much RAM even the CPU-sized models and a JupyterLab tab get tight.
MIN_RAM_BYTES = 4 * GiB
# Notebook 12 runs gpt-oss-20b on a GPU whose free memory holds memory.plan at its default settings:
# a KV cache of 4,096 positions, prompts of up to 1,024 tokens read in one pass.
NB12_CONTEXT, NB12_PROMPT_TOKENS = 4096, 1024


@dataclass(frozen=True)
class Package:
    """A distribution the course uses, and what is lost without it."""

    dist: str  # the name pip knows
    module: str  # the name Python imports
    role: str  # "course": notebooks need it; "test": only `make test`; "kernels": optional
    used_for: str  # what the course uses it for
    without: str  # what happens when it is missing


PACKAGES = (
    Package("torch", "torch", "course", "every model and check",
            "nothing runs: install the course (make lab)"),
    Package("triton", "triton", "kernels", "the kernels of notebook 10",
            "notebook 10's kernels cannot run; every other notebook can"),
    Package("safetensors", "safetensors", "course", "reading and writing checkpoints",
            "checkpoints cannot be read or written"),
    Package("huggingface_hub", "huggingface_hub", "course", "downloads from the Hub",
            "no downloads; local checkpoints still load"),
    Package("tiktoken", "tiktoken", "course", "the tokenizers (offline, from data/)",
            "no tokenizer: notebooks 01, 07, 11, 12 and 13 stop"),
    Package("matplotlib", "matplotlib", "course", "plots and widget figures", "no plots or widgets"),
    Package("ipywidgets", "ipywidgets", "course", "the widgets' controls", "the Explore sections have no controls"),
    Package("jupyterlab", "jupyterlab", "course", "the notebooks' editor", "no JupyterLab to open the notebooks in"),
    Package("tqdm", "tqdm", "course", "progress bars", "no progress bars"),
    Package("transformers", "transformers", "course", "the reference GPT-2 and gpt-oss",
            "the checks against transformers' GPT-2 and gpt-oss stop"),
    Package("openai-harmony", "openai_harmony", "test", "make test (OpenAI's harmony renderer)",
            "the tests against OpenAI's harmony renderer cannot run"),
    Package("pytest", "pytest", "test", "make test", "make test cannot run"),
    Package("nbval", "nbval", "test", "make test (the notebooks)", "make test cannot check the notebooks"),
    Package("gpt-oss", "gpt_oss", "test", "make test (OpenAI's reference model)",
            "the tests against OpenAI's reference model cannot run"),
)


@dataclass(frozen=True)
class Check:
    """One row of the environment table."""

    item: str
    wanted: str
    found: str
    status: str  # OK, WARN or FAIL
    meaning: str


# ---- versions -------------------------------------------------------------------------------

def env_flag(name: str) -> bool:
    """True when the environment variable ``name`` says yes as huggingface_hub reads one: 1, true, yes, on (any case)."""
    # Not trimmed, as huggingface_hub does not trim: " 1" must not read as offline here and online there.
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


def triton_interpret_flag() -> bool:
    """True when TRITON_INTERPRET says yes as Triton reads it: 1, true, y, yes, on (any case, not trimmed)."""
    return os.environ.get("TRITON_INTERPRET", "").lower() in ("1", "true", "y", "yes", "on")


def _release(version: str) -> tuple[int, ...]:
    """The numeric release part of a version: '2.13.0+cpu' -> (2, 13, 0), '0.0.8' -> (0, 0, 8)."""
    nums = re.match(r"\d+(\.\d+)*", version.strip())
    return tuple(int(x) for x in nums.group(0).split(".")) if nums else ()


def _version(version: str):
    """The version as packaging reads it (pre-releases and dev builds included), or None."""
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:
        return None
    try:
        return Version(version)
    except InvalidVersion:
        return None


def _same_release(a: str, b: str) -> bool:
    """Whether two versions are the same release: '2.13.0+cpu' is 2.13.0, '0.8.0rc1' and '0.8.0.dev1' are not."""
    va, vb = _version(a), _version(b)
    if va is not None and vb is not None:
        return type(va)(va.public) == type(vb)(vb.public)  # the build's local label (+cpu, +cu128) aside
    ra, rb = _release(a), _release(b)
    n = max(len(ra), len(rb))
    return ra + (0,) * (n - len(ra)) == rb + (0,) * (n - len(rb))


def _older(found: str, least: str) -> bool:
    """Whether ``found`` comes before ``least`` (2.4.0rc1 does come before 2.4)."""
    vf, vl = _version(found), _version(least)
    if vf is not None and vl is not None:
        return vf < vl
    rf, rl = _release(found), _release(least)
    return bool(rf) and rf < rl


def _pip_install(dist: str, pin: str | None, least: str | None = None) -> str:
    """The command that installs ``dist`` at its pin into this Python, from any folder (notebook 00 runs in notebooks/)."""
    wanted = dist + (f"=={pin}" if pin else f">={least}" if least else "")
    if dist == "gpt-oss":  # as the Makefile installs it: it declares Python >= 3.12, and needs only torch
        return f"{shlex.quote(sys.executable)} -m pip install --no-deps --ignore-requires-python {wanted}"
    # Quoted: a course folder in "My Drive" made the command two words at the space.
    return (f"{shlex.quote(sys.executable)} -m pip install -c {shlex.quote(str(REPO / 'constraints.txt'))} "
            f"{shlex.quote(wanted)}")


def course_installed() -> bool:
    """Whether this Python has the course installed (pip knows gptoss-edu), as make lab installs it."""
    try:
        metadata.distribution("gptoss-edu")
    except metadata.PackageNotFoundError:
        return False
    return True


def _other_environment() -> Path | None:
    """This Python's environment where the course was installed into one other than its .venv (make
    VENV=$CONDA_PREFIX lab), else None: there clean-venv refuses, and a plain make lab would build a .venv."""
    prefix = Path(sys.prefix)
    return None if prefix.resolve() == (REPO / ".venv").resolve() or not course_installed() else prefix


def _remake(target: str = "lab") -> str:
    """How to install the pins (torch and Triton, which the Makefile installs, too) again in this Python, then
    run make ``target``."""
    prefix = _other_environment()
    if prefix is None:
        return f"make clean-venv, then make {target}"
    return f"rm -f {shlex.quote(str(prefix / '.installed'))}, then make VENV={shlex.quote(str(prefix))} {target}"


def _rebuild() -> str:
    """How to make this Python's environment again, where torch or Triton is installed but broken (a reinstall
    at the same version is skipped by pip)."""
    prefix = _other_environment()
    if prefix is None:
        return "make clean-venv, then make lab"
    return (f"make the environment {shlex.quote(str(prefix))} again (a conda one: conda env remove -p "
            f"{shlex.quote(str(prefix))}, then the README's conda steps)")


def elsewhere_fix(venv: Check | None) -> str | None:
    """The fix for every package row when this Python is not the course's own environment, or None when it is.

    Installing into a Python the notebooks do not run (the machine's own, which Debian refuses to pip into)
    mends nothing: ``venv`` is check_venv's row.
    """
    if venv is not None and venv.status != OK:
        return (f"this Python is not the course's (see the environment row): run "
                f"{shlex.quote(str(REPO / '.venv' / 'bin' / 'python'))} -m gptoss_edu doctor")
    if venv is None and not course_installed():
        return "the course is not installed in this Python: make lab installs it, with its packages, into .venv"
    return None


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(repo: Path = REPO) -> dict[str, str]:
    """Pinned versions: constraints.txt, plus torch and Triton from the Makefile (which installs them)."""
    pins: dict[str, str] = {}
    constraints = repo / "constraints.txt"
    if constraints.is_file():
        for line in constraints.read_text().splitlines():
            m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+).*", line)
            if m:
                pins[_normal(m.group(1))] = m.group(2)
    makefile = repo / "Makefile"
    if makefile.is_file():
        for var, dist in (("TORCH_VERSION", "torch"), ("TRITON_VERSION", "triton")):
            m = re.search(rf"^{var}\s*:?=\s*(\S+)", makefile.read_text(), re.M)
            if m:
                pins[dist] = m.group(1)
        m = re.search(r"^GPT_OSS_REF\s*:?=\s*gpt-oss\s*==\s*(\S+)", makefile.read_text(), re.M)
        if m:  # OpenAI's reference model, which the Makefile installs for the tests
            pins["gpt-oss"] = m.group(1)
    # A CUDA build of torch requires its own Triton (the Makefile adds one only to the CPU build).
    try:
        torch_triton = [r for r in metadata.requires("torch") or [] if re.match(r"triton\s*==", r)]
    except metadata.PackageNotFoundError:
        torch_triton = []
    if torch_triton:
        pins["triton"] = re.match(r"triton\s*==\s*([^\s;,]+)", torch_triton[0]).group(1)
    return pins


def read_minimums() -> dict[str, str]:
    """The lowest versions pyproject.toml accepts, from the installed package's metadata."""
    mins: dict[str, str] = {}
    try:
        requires = metadata.requires("gptoss-edu") or []
    except metadata.PackageNotFoundError:
        return mins
    for req in requires:
        m = re.match(r"([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][^,;\s]*)", req)
        if m:
            mins[_normal(m.group(1))] = m.group(2)
    return mins


UNKNOWN_VERSION = "present (version unknown)"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _installed(pkg: Package) -> str | None:
    try:
        return metadata.version(pkg.dist)
    except metadata.PackageNotFoundError:
        # Some environments (conda, system packages) import fine without pip metadata.
        return UNKNOWN_VERSION if _importable(pkg.module) else None


# Run in a Python of its own: an import can hang or crash, and importing Triton before TRITON_INTERPRET
# is set would leave its own library compiled for a GPU in this process (notebook 10 then fails).
_IMPORT_EACH = """
import importlib, sys
for name in sys.argv[1:]:
    print("start", name, flush=True)
    try:
        importlib.import_module(name)
    except BaseException as e:
        message = (str(e).strip().splitlines() or [""])[0][:300]
        print("fail", name, type(e).__name__ + (": " + message if message else ""), flush=True)
"""


def import_problems(modules: list[str], timeout: float = 180) -> dict[str, str]:
    """{module: why it does not import} for those of ``modules`` that fail, tried in one fresh Python."""
    todo = [m for m in modules if m not in sys.modules]  # imported already by this process: it imports
    if not todo:
        return {}
    try:
        done = subprocess.run([sys.executable, "-c", _IMPORT_EACH, *todo], capture_output=True, text=True,
                              timeout=timeout, cwd=REPO)  # not the caller's folder, where a torch.py would shadow
        out, ended = done.stdout, (f"importing it ended Python (exit status {done.returncode})"
                                   if done.returncode else "")
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        ended = f"importing it took over {timeout:.0f} s"
    problems, current = {}, None
    for line in out.splitlines():
        word, _, rest = line.partition(" ")
        if word == "start":
            current = rest
        elif word == "fail":
            name, _, why = rest.partition(" ")
            problems[name], current = why, None
    if ended and current is not None and current not in problems:  # the import it was in when it stopped
        problems[current] = ended
    return problems


def check_package(pkg: Package, pins: dict[str, str], mins: dict[str, str], gpu: bool,
                  import_problem: str | None = None, elsewhere: str | None = None) -> Check:
    """Compare one package with its pin and its minimum; say what it means for the course.

    ``import_problem`` is why an installed package does not import (see :func:`import_problems`);
    ``elsewhere``, the fix when this Python is not the course's environment (see :func:`elsewhere_fix`).
    """
    pin, least = pins.get(_normal(pkg.dist)), mins.get(_normal(pkg.dist))
    wanted = pin or (f">={least}" if least else "any")
    found = _installed(pkg)
    # torch and Triton come from the Makefile, which picks the build (CPU or CUDA); a bare pip install of
    # torch fetches PyPI's CUDA build on Linux.
    reinstall = elsewhere or (_remake() if pkg.dist in ("torch", "triton") else _pip_install(pkg.dist, pin, least))

    def advice(said: str, fix: str) -> str:  # where this Python is not the course's, that is the advice
        return f"{said}; {elsewhere}" if elsewhere else f"{said}: {fix}"
    if found is None:
        status = FAIL if pkg.role == "course" else WARN
        if pkg.dist == "triton" and sys.platform != "linux":  # no wheel to install: saying "pip install" would fail
            return Check(pkg.dist, wanted, "missing", status, f"{pkg.without} (Triton has builds for Linux only)")
        if pkg.dist in ("torch", "triton") or elsewhere:
            return Check(pkg.dist, wanted, "missing", status, pkg.without.removesuffix(": install the course (make lab)")
                         + f": {reinstall}")
        return Check(pkg.dist, wanted, "missing", status, f"{pkg.without} ({reinstall})")
    if found == UNKNOWN_VERSION:  # no pip metadata (a conda or system package): it imports, its version is not said
        return Check(pkg.dist, wanted, found, WARN, advice(
            f"{pkg.used_for}; its version cannot be compared with "
            f"{'the pin' if pin else 'the minimum' if least else 'any'}", f"if something fails, {reinstall}"))
    if least and _older(found, least):
        return Check(pkg.dist, wanted, found, FAIL,
                     advice(f"older than {least}, the oldest the course accepts", reinstall))
    if import_problem is not None and pkg.dist == "matplotlib" and os.environ.get("MPLBACKEND") \
            and "backend" in import_problem:  # a setting from another project, not a broken install
        return Check(pkg.dist, wanted, found, FAIL, f"MPLBACKEND={os.environ['MPLBACKEND']} is not a backend "
                     "matplotlib knows, so import matplotlib fails: unset MPLBACKEND (the notebooks choose inline)")
    if import_problem is not None:
        # Installed but broken (a missing shared library, a build for another Python or CPU): reinstall it.
        fix = (_rebuild() if pkg.dist in ("torch", "triton")
               else _pip_install(pkg.dist, pin).replace(" install ", " install --force-reinstall ", 1))
        return Check(pkg.dist, wanted, found, FAIL if pkg.role == "course" else WARN, advice(
            f"installed, but import {pkg.module} fails ({import_problem}), so "
            f"{pkg.without.removesuffix(': install the course (make lab)')}", fix))
    if pkg.dist == "triton" and not gpu and (problem := interpreter_problem(found)):
        return Check(pkg.dist, wanted, found, WARN, f"notebook 10's kernels cannot run: {problem}")
    if pkg.dist == "triton" and gpu and triton_interpret_flag():  # left set in a shell profile, say
        return Check(pkg.dist, wanted, found, WARN, "TRITON_INTERPRET is set, so notebook 10 would run the kernels in "
                     "Triton's interpreter on the CPU, not on the GPU: unset it (it is for machines without a GPU), "
                     "then restart the kernel")
    if pkg.dist == "triton":
        meaning = ("notebook 10 compiles the kernels for the GPU" if gpu else
                   "notebook 10 runs the kernels in Triton's interpreter (TRITON_INTERPRET=1): correct, slow")
    else:
        meaning = pkg.used_for
    if pin and _release(found) and not _same_release(found, pin):
        fix = reinstall if pkg.dist in ("torch", "triton") else f"{reinstall} (or {_remake()})"
        return Check(pkg.dist, wanted, found, WARN, advice("not the tested version", f"if something fails, {fix}"))
    return Check(pkg.dist, wanted, found, OK, meaning)


def check_python(mins_python: str | None = None) -> Check:
    """Python itself against the package's requires-python."""
    if mins_python is None:
        try:
            spec = metadata.metadata("gptoss-edu")["Requires-Python"] or ""
        except metadata.PackageNotFoundError:
            spec = ""
        mins_python = spec.removeprefix(">=").strip() or "3.11"
    found = platform.python_version()
    ok = _release(found) >= _release(mins_python)
    return Check("python", f">={mins_python}", found, OK if ok else FAIL,
                 "supported" if ok else f"the course needs Python {mins_python} or newer")


def check_venv(repo: Path = REPO, prefix: str = sys.prefix) -> Check | None:
    """Whether this Python is the course's .venv, where the course folder has one (None where it has none)."""
    venv = repo / ".venv"
    if not (venv / "pyvenv.cfg").is_file():  # no .venv: a conda environment, say, made with make VENV=...
        return None
    if Path(prefix).resolve() == venv.resolve():
        return Check("environment", ".venv", ".venv", OK, "the course's own")
    return Check("environment", ".venv", prefix, WARN,
                 f"not the course's .venv, so the rows below are this Python's: run "
                 f"{shlex.quote(str(venv / 'bin' / 'python'))} -m gptoss_edu "
                 "doctor (or source .venv/bin/activate first); in JupyterLab, choose the course's kernel")


def check_course_packages(foreign: bool = False) -> Check:
    """Whether the kernels' package imports beside this one: an install older than the course's files may lose it.

    ``foreign``: this Python is not the course's .venv (check_venv said so), which is then the reason.
    """
    spec = importlib.util.find_spec("gptoss_kernels")
    if spec is not None:
        # From a clone, gptoss_kernels is in <course>/kernels/; from an installed wheel, beside gptoss_edu.
        here = Path(__file__).resolve().parent.parent
        there = Path(spec.origin or "").resolve().parent.parent
        if spec.origin and there not in (here, here / "kernels"):  # another clone on PYTHONPATH, say
            path = os.environ.get("PYTHONPATH")
            return Check("course packages", "gptoss_edu, gptoss_kernels", "from two course folders", FAIL,
                         f"gptoss_edu comes from {here}, gptoss_kernels from {there}: two copies of the course are "
                         "mixed" + (f" (PYTHONPATH={path} brings one in: unset it)" if path else
                                    ": run from one course folder, with its own .venv"))
        return Check("course packages", "gptoss_edu, gptoss_kernels", "both found", OK, "the course's own code")
    if foreign:  # the course is installed in its .venv, not here: an old install is not the cause
        why = ("this Python does not have the course installed (see the environment row): its .venv does, so run "
               "doctor with .venv/bin/python; notebooks 10 and 12 stop without gptoss_kernels")
    elif not course_installed():  # the machine's own Python, before make lab ever ran
        why = ("the course is not installed in this Python: make lab installs it into .venv (then run doctor with "
               ".venv/bin/python); notebooks 10 and 12 stop without gptoss_kernels")
    else:
        why = ("the course's install is older than its files (the kernels moved to kernels/gptoss_kernels/): "
               "make lab reinstalls it (or .venv/bin/python -m pip install -e . in the course's folder); "
               "notebooks 10 and 12 stop without it")
    return Check("course packages", "gptoss_edu, gptoss_kernels", "no gptoss_kernels", FAIL, why)


def _closure(extras: tuple[str, ...]) -> tuple[dict[str, str], set[str], set[str]]:
    """(found versions, missing, incompatible) over everything gptoss-edu[extras] needs, recursively."""
    from packaging.markers import default_environment
    from packaging.requirements import InvalidRequirement, Requirement

    env = default_environment()
    found: dict[str, str] = {}
    missing: set[str] = set()
    broken: set[str] = set()
    todo, done = [("gptoss-edu", extras)], set()
    while todo:
        dist, wanted = todo.pop()
        if (_normal(dist), wanted) in done:
            continue
        done.add((_normal(dist), wanted))
        try:
            requires = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:  # the course itself not installed: its packages at least
            requires = [p.dist for p in PACKAGES if p.role == "course"] if dist == "gptoss-edu" else []
        for line in requires:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if req.marker and not any(req.marker.evaluate({**env, "extra": e}) for e in wanted or ("",)):
                continue
            name = _normal(req.name)
            try:
                version = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                # Imported without pip metadata (conda, system packages): there, with a version not said.
                module = next((p.module for p in PACKAGES if _normal(p.dist) == name), name.replace("-", "_"))
                if not _importable(module):
                    missing.add(f"{name} (for {_normal(dist)})")
                continue
            if req.specifier and not req.specifier.contains(version, prereleases=True):
                broken.add(f"{name} {version} ({_normal(dist)} needs {req.specifier})")
            found[name] = version
            todo.append((req.name, tuple(sorted(req.extras))))
    return found, missing, broken


def _listed(problems: list[str]) -> str:
    return "; ".join(problems[:4]) + (" ..." if len(problems) > 4 else "")


def check_dependencies(pins: dict[str, str], elsewhere: str | None = None) -> list[Check]:
    """Every package the course's packages need, recursively: installed, compatible, at its pin.

    ``elsewhere``: the fix when this Python is not the course's environment (see :func:`elsewhere_fix`).
    """
    try:
        course = _closure(())
        full = _closure(("dev",))
    except ImportError:
        return [Check("dependencies", "installed, compatible", "not checked", WARN,
                      "the packaging library is missing: "
                      + (elsewhere or _pip_install("packaging", pins.get("packaging"))))]
    rows = []
    bad = sorted(course[1]) + sorted(course[2])
    if bad:
        rows.append(Check("dependencies", "installed, compatible", f"{len(bad)} problem(s)", FAIL,
                          f"{_listed(bad)}: {elsewhere or _remake()}"))
    else:
        rows.append(Check("dependencies", "installed, compatible", f"{len(course[0])} packages", OK,
                          "every package the course's packages need is there, in a version they accept"))
    # What only the tests need (pytest, nbval, playwright, ...): no notebook stops without it.
    tests_only = sorted((full[1] | full[2]) - (course[1] | course[2]))
    if tests_only:
        rows.append(Check("test dependencies", "installed, compatible", f"{len(tests_only)} problem(s)", WARN,
                          f"{_listed(tests_only)}: the notebooks run; make test needs them "
                          + (f"({elsewhere})" if elsewhere else f"({_remake('test')})")))
    # The table shows four: the course's own packages first, then new major or minor versions, then patches.
    named = {_normal(p.dist) for p in PACKAGES} | {"numpy"}
    drifted = sorted((_normal(n) not in named, _release(v)[:2] == _release(pins[n])[:2], n, v)
                     for n, v in full[0].items() if n in pins and _release(v) and not _same_release(v, pins[n]))
    drift = [f"{n} {v} (tested {pins[n]})" for _, _, n, v in drifted]
    # A package no pin covers got whatever pip chose (a platform's own dependency, or one a newer release
    # brings): said, not feared.
    loose = sorted(f"{n} {v}" for n, v in full[0].items() if n not in pins)
    unpinned = (f"; without a pin (the versions pip chose): {', '.join(loose[:4])}{' ...' if len(loose) > 4 else ''}"
                if loose else "")
    if not full[0]:  # nothing of the course's installed here: "0 of 0 as pinned" would read as a pass
        rows.append(Check("pinned versions", "constraints.txt", "nothing to compare", WARN,
                          elsewhere or f"none of the course's packages is installed in this Python: {_remake()}"))
    elif drift:
        rows.append(Check("pinned versions", "constraints.txt", f"{len(drift)} differ", WARN,
                          f"{_listed(drift)}: the tests passed with the pins"
                          + (f"; {elsewhere}" if elsewhere else f" ({_remake()}, reinstalls them)") + unpinned))
    else:
        pinned = sum(n in pins for n in full[0])
        rows.append(Check("pinned versions", "constraints.txt", f"{pinned} of {len(full[0])} as pinned", OK,
                          "the versions the tests pass with" + unpinned))
    return rows


# ---- the machine ------------------------------------------------------------------------------

def cpu_cores() -> int:
    """Cores this process may use (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def physical_ram() -> int | None:
    """The machine's memory in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        try:
            import psutil

            return int(psutil.virtual_memory().total)
        except ImportError:
            return None


def container_memory_limit(root: Path = Path("/sys/fs/cgroup"), own: Path = Path("/proc/self/cgroup")) -> int | None:
    """The memory limit of this process's container (Linux cgroups, v2 or v1) in bytes, or None without one."""
    # A JupyterHub or Kubernetes pod sees the whole machine's RAM, and is killed at its own, smaller limit.
    files = [root / "memory.max", root / "memory" / "memory.limit_in_bytes"]
    try:
        for line in own.read_text().splitlines():
            number, controllers, group = line.split(":", 2)
            # The group and every group above it: a limit set on a parent (a Slurm job's, say) holds too.
            groups = [Path(group.lstrip("/")), *Path(group.lstrip("/")).parents]
            if number == "0" and not controllers:
                files += [root / g / "memory.max" for g in groups] + [root / "unified" / g / "memory.max" for g in groups]
            elif "memory" in controllers.split(","):
                files += [root / "memory" / g / "memory.limit_in_bytes" for g in groups]
    except (OSError, ValueError):
        pass
    limits = []
    for file in files:
        try:
            text = file.read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # "max": no limit; v1 writes a huge number for none, which the machine's RAM undercuts
            limits.append(int(text))
    return min(limits) if limits else None


def total_ram() -> int | None:
    """Memory this process may use, in bytes: the machine's, or its container's limit where that is smaller."""
    ram, limit = physical_ram(), container_memory_limit()
    if ram is None or limit is None:
        return ram if limit is None else limit
    return min(ram, limit)


def is_container_limit(ram: int) -> bool:
    """Whether ``ram`` (total_ram's answer) is a container's limit: less than the machine's own RAM."""
    physical = physical_ram()
    return physical is not None and ram < physical


def ram_words(ram: int) -> str:
    """``ram`` (total_ram's answer) in words that say whose limit it is, e.g. '4.0 GiB (the container's limit)'."""
    return gib(ram) + (" (the container's limit)" if is_container_limit(ram) else "")


def gpu_info() -> tuple[str, int] | None:
    """(name, memory in bytes) of the first CUDA GPU, or None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return props.name, int(props.total_memory)


def _nvidia_smi(*args: str) -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _cuda_release(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def unused_nvidia_gpu() -> tuple[str, str] | None:
    """(the GPU, why torch cannot use it) when nvidia-smi sees an NVIDIA GPU that torch does not, else None."""
    try:
        import torch
    except ImportError:
        return None
    if torch.cuda.is_available():
        return None
    names = _nvidia_smi("--query-gpu=name,driver_version", "--format=csv,noheader")
    if not names or not names.strip():
        return None
    name, _, driver = names.strip().splitlines()[0].partition(",")
    name, driver = name.strip(), driver.strip()
    hidden = _hiding_visible_devices()
    if hidden:
        return name, hidden
    built_for = torch.version.cuda  # None in a CPU build
    if built_for is None:
        return name, (f"this torch ({torch.__version__}) is a CPU build: run make clean-venv, then make lab without "
                      "TORCH_INDEX (PyPI's Linux torch is the CUDA build)")
    found = re.search(r"CUDA Version:\s*(\d+\.\d+)", _nvidia_smi() or "")
    runs = found.group(1) if found else None
    if runs and _cuda_release(runs) < _cuda_release(built_for):
        return name, (f"its driver ({driver}) runs CUDA up to {runs}, and this torch ({torch.__version__}) is built "
                      f"for CUDA {built_for}: update the NVIDIA driver, or install a torch built for CUDA {runs} or "
                      "older (make clean-venv, then make lab TORCH_INDEX=... with the index pytorch.org gives)")
    return name, (f"torch {torch.__version__} (CUDA {built_for}) cannot use it (driver {driver}): see the warning "
                  "torch prints at torch.cuda.is_available()")


def _hiding_visible_devices() -> str | None:
    """Why torch sees no GPU when CUDA_VISIBLE_DEVICES hides them all ('' or '-1'), or None."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None or (visible.strip() and not visible.strip().startswith("-")):
        return None
    return (f"CUDA_VISIBLE_DEVICES is set to {visible!r}, which hides every GPU from torch: unset it, then start "
            "Python (or JupyterLab) again")


# Triton supports NVIDIA GPUs of compute capability 8.0 (Ampere) and newer. Triton 3.9 still compiles
# the kernels for a Tesla T4 (7.5), but Triton does not support that GPU and the course never ran
# them there, so below 8.0 the course takes the PyTorch path.
TRITON_MIN_CAPABILITY = (8, 0)


def device_problem(device: Any) -> str | None:
    """Why torch cannot put tensors on ``device`` (a torch.device) here, or None when it can."""
    import torch

    if device.type == "cuda":
        if not torch.cuda.is_available():
            unused = unused_nvidia_gpu()
            return "no CUDA GPU is available here" + (f" (nvidia-smi sees {unused[0]}, but {unused[1]})" if unused else "")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            return (f"this machine has {count} CUDA GPU{'s' if count > 1 else ''}, "
                    f"cuda:0{f' to cuda:{count - 1}' if count > 1 else ''}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        return "no Apple GPU (MPS) is available to this PyTorch"
    elif device.type not in ("cpu", "cuda", "mps"):
        return "the course runs on cpu, cuda (an NVIDIA GPU) or mps (an Apple one)"
    return None


def triton_gpu_problem(device: object = None) -> str | None:
    """Why the kernels do not run on this CUDA GPU (older than Triton supports), or None when they do or there is none."""
    try:
        import torch
    except ImportError:  # the environment check reports a missing torch; nothing else here needs it
        return None
    if not torch.cuda.is_available() or getattr(torch.version, "hip", None):  # ROCm: Triton has its own AMD targets
        return None
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) >= TRITON_MIN_CAPABILITY:
        return None
    least = ".".join(map(str, TRITON_MIN_CAPABILITY))
    return (f"this GPU, {torch.cuda.get_device_name(device)}, has compute capability {major}.{minor}, and the course "
            f"runs its Triton kernels only on {least} and newer, the GPUs Triton supports (A100, RTX 30xx, L4, "
            "RTX 40xx, H100 and later)")


def interpreter_problem(triton_version: str | None = None, numpy_version: str | None = None) -> str | None:
    """Why Triton's interpreter cannot run the kernels with the installed Triton and numpy, or None when it can."""
    try:
        triton_version = triton_version or metadata.version("triton")
        numpy_version = numpy_version or metadata.version("numpy")
    except metadata.PackageNotFoundError:  # no Triton: reported on its own; no numpy: no interpreter at all
        return None
    # Before 3.7 the interpreter turns a one-element array into a Python int with int(), which numpy
    # 2.4 refuses (triton-lang/triton#9171): every kernel with a loop stops in a TypeError.
    if _older(triton_version, "3.7") and not _older(numpy_version, "2.4"):
        return (f"Triton {triton_version}'s interpreter cannot run with numpy {numpy_version} (before Triton 3.7 it "
                "stops in \"only 0-dimensional arrays can be converted to Python scalars\"): install numpy older "
                "than 2.4 (pip install \"numpy<2.4\") or a Triton of 3.7 or newer (make clean-venv, then make lab "
                "installs the versions the course is tested with)")
    return None


def triton_gpu() -> bool:
    """True when there is a CUDA GPU the Triton kernels run on (else they run only in Triton's interpreter)."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() and triton_gpu_problem() is None


def gib(n: float) -> str:
    """Bytes as GiB with one decimal."""
    return f"{n / GiB:.1f} GiB"


def _gpt_oss_20b_bytes() -> int:
    from .config import preset

    return preset("gpt-oss-20b").weight_bytes(2, mxfp4_experts=True)


def gpu_bytes_for_notebook_12(model: str = "gpt-oss-20b") -> int:
    """The GPU memory in which notebook 12 runs ``model`` at its defaults: its memory plan and the CUDA context."""
    from .config import preset
    from .memory import plan

    return plan(preset(model), NB12_CONTEXT, 0, prompt_tokens=NB12_PROMPT_TOKENS).total + CUDA_CONTEXT_BYTES


def check_machine(torch_imports: bool = True) -> list[Check]:
    """CPU cores, RAM, GPU and free disk, each with what it means for the course.

    ``torch_imports=False`` (torch is installed but broken) leaves the GPU unknown rather than import torch.
    """
    rows = []
    if _native_windows():  # the README sends Windows to WSL 2; a notebook's doctor is where a learner looks
        rows.append(Check("system", "Linux", f"Windows {platform.release()}", WARN,
                          "untried here: the course's make commands expect Linux, and Triton (notebook 10) has no "
                          "Windows build; in WSL 2 (with Ubuntu, say) it runs as on Linux"))
    cores = cpu_cores()
    rows.append(Check("CPU cores", ">=2", str(cores), OK if cores >= 2 else WARN,
                      "every notebook runs on a CPU" if cores >= 2 else "one core: notebooks run, slowly"))
    ram = total_ram()
    if ram is None:
        rows.append(Check("memory (RAM)", f">={gib(MIN_RAM_BYTES)}", "unknown", WARN, "could not read it"))
    else:
        enough = ram >= MIN_RAM_BYTES
        rows.append(Check("memory (RAM)", f">={gib(MIN_RAM_BYTES)}", ram_words(ram), OK if enough else WARN,
                          "enough for every notebook" if enough else "tight: close other programs"))
    weights = _gpt_oss_20b_bytes()
    need = gpu_bytes_for_notebook_12()
    gpu = gpu_info() if torch_imports else None
    unused = unused_nvidia_gpu() if gpu is None and torch_imports else None
    if not torch_imports:
        rows.append(Check("GPU", f">={gib(need)} for 12", "unknown", WARN,
                          "torch does not import (its row says why), so it cannot look for a GPU"))
    elif unused is not None:
        rows.append(Check("GPU", f">={gib(need)} for 12", f"{unused[0]}, unused by torch", WARN,
                          f"{unused[1]}. Until then the notebooks run on the CPU"))
    elif gpu is None:
        ten = "10 uses Triton's interpreter" if _has_triton() else "10 needs Triton, missing here"
        rows.append(Check("GPU", f">={gib(need)} for 12", "none (CUDA not available)", WARN,
                          f"CPU only: notebooks run; {ten}, 12 uses the small checkpoint"))
    else:
        name, mem = gpu
        big = mem >= need
        # Others may hold what 12 needs (its own CUDA context included, as nvidia-smi's free memory is);
        # asked of NVML, which makes no CUDA context on the GPU (notebook 00's kernel would keep one).
        free = gpu_free_bytes(0) if big else None
        held = free is not None and free < need
        old = triton_gpu_problem(0)
        least = ".".join(map(str, TRITON_MIN_CAPABILITY))
        ten = ("10 needs Triton, missing here" if not _has_triton() else "10 compiles and times the kernels" if not old
               else f"too old for Triton (compute capability below {least}): 10 uses Triton's interpreter")
        twelve = ("12 runs gpt-oss-20b" + (" on the PyTorch path" if old else "") if big and not held else
                  f"other programs hold {gib(mem - free)} of it (nvidia-smi lists them), so 12 uses the small "
                  "checkpoint until they end" if big else
                  f"gpt-oss-20b needs {gib(need)}, so 12 uses the small checkpoint")
        rows.append(Check("GPU", f">={gib(need)} for 12", f"{name}, {gib(mem)}" + (f" ({gib(free)} free)" if held else ""),
                          OK if big and not old and not held else WARN, f"{ten}; {twelve}"))
    rows.append(_hub_cache_row(weights))
    return rows


def _native_windows() -> bool:
    """Whether this Python runs on Windows itself (WSL 2's is a Linux one)."""
    return os.name == "nt"


def _has_triton() -> bool:
    """Whether Triton is installed (looked up, not imported: importing it sets up its compiler)."""
    return importlib.util.find_spec("triton") is not None


def _hub_cache_row(weights: int) -> Check:
    """Whether notebook 12 finds gpt-oss-20b in the Hugging Face cache, or room (and leave) to download it there."""
    from .files import write_problem
    from .hub import cache_variable, hub_cache

    cache = hub_cache()
    wanted = f">={gib(weights)} for 12"
    if _cached_gpt_oss_20b():  # a teacher's shared copy, say: no room is needed, nor leave to write
        return Check("free disk (HF cache)", wanted, "gpt-oss-20b already there", OK,
                     "nothing to download: 12 finds it in the cache (HF_HUB_OFFLINE=1: without the network)")
    unwritable = write_problem(cache)
    if unwritable:
        return Check("free disk (HF cache)", wanted, unwritable, WARN,
                     f"nothing can be downloaded there: set {cache_variable()} to a folder you may write (12 uses the small "
                     "checkpoint)")
    free = disk_free(cache)
    roomy = free >= weights
    return Check("free disk (HF cache)", wanted, gib(free), OK if roomy else WARN,
                 "room to download gpt-oss-20b" if roomy else
                 f"gpt-oss-20b's download is {gib(weights)}: 12 uses the small checkpoint")


def _cached_gpt_oss_20b() -> bool:
    """Whether the Hugging Face cache holds all of gpt-oss-20b that notebook 12 reads (no network asked)."""
    try:
        from huggingface_hub import snapshot_download

        from .hub import CONFIG, missing_files

        folder = snapshot_download("openai/gpt-oss-20b", local_files_only=True, allow_patterns=[CONFIG])
        return not missing_files(folder)
    except Exception:  # noqa: BLE001 - not cached, no huggingface_hub, an unreadable index: all mean "not there"
        return False


def check_data() -> Check:
    """The tokenizer files in data/ that notebooks 01, 07, 11, 12 and 13 read offline."""
    try:
        from .tokenizer import BPE_FILES, check_bpe_file, data_dir, restore_advice

        folder = data_dir()
    except (ImportError, FileNotFoundError) as e:
        return Check("data files", "tokenizer BPE files", "not found", FAIL, str(e))
    missing = [f for f in BPE_FILES if not (folder / f).is_file()]
    if missing:
        return Check("data files", "tokenizer BPE files", f"missing {', '.join(missing)}", FAIL,
                     restore_advice("them"))
    damaged = []
    for f in BPE_FILES:  # the tokenizer refuses a file whose hash is wrong: say so here first
        try:
            check_bpe_file(f)
        except ValueError:
            damaged.append(f)
    if damaged:
        return Check("data files", "tokenizer BPE files", f"damaged {', '.join(damaged)}", FAIL,
                     f"their SHA-256 is not tiktoken's: {restore_advice('them')}")
    return Check("data files", "tokenizer BPE files", "present, hashes right", OK, "tokenizers load offline")


# ---- the report -------------------------------------------------------------------------------

class EnvironmentReport:
    """The rows of the environment check; a table in a notebook, plain text in a terminal."""

    columns = ("item", "wanted", "found", "status", "meaning")

    def __init__(self, packages: list[Check], machine: list[Check]) -> None:
        self.packages, self.machine = packages, machine

    @property
    def rows(self) -> list[Check]:
        """The packages' rows, then the machine's."""
        return self.packages + self.machine

    def __iter__(self) -> Iterator[Check]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: str) -> Check:
        for row in self.rows:
            if row.item == item:
                return row
        raise KeyError(f"no row {item!r}; rows are {', '.join(r.item for r in self.rows)}")

    @property
    def ok(self) -> bool:
        """True when no row is FAIL (WARN rows are allowed)."""
        return not any(r.status == FAIL for r in self.rows)

    def summary(self) -> str:
        """One stable line: OK when no row is FAIL, or which rows fail."""
        bad = [r.item for r in self.rows if r.status == FAIL]
        if bad:
            return f"environment: FAIL: {', '.join(bad)} (see the table for what to do)"
        return "environment: OK (no FAIL in the table)"

    def table(self) -> str:
        """The rows as a plain-text table."""
        cells = [self.columns] + [tuple(getattr(r, c) for c in self.columns) for r in self.rows]
        widths = [max(len(row[i]) for row in cells[:]) for i in range(len(self.columns) - 1)]
        lines = []
        for k, row in enumerate(cells):
            lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])
            if k == 0:
                lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len("meaning"))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.table() + "\n\n" + self.summary()

    def _repr_html_(self) -> str:
        colour = {OK: "#d4f4d4", WARN: "#fff1c2", FAIL: "#ffd0d0"}  # with dark text: a dark theme's is white
        head = "".join(f"<th style='text-align:left'>{c}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(
                f"<td style='text-align:left;{'color:#1a1a1a;background:' + colour[r.status] if c == 'status' else ''}'>"
                f"{html.escape(getattr(r, c))}</td>" for c in self.columns) + "</tr>"
            for r in self.rows)
        return f"<table>{'<tr>' + head + '</tr>'}{body}</table><p><b>{html.escape(self.summary())}</b></p>"


def check_environment() -> EnvironmentReport:
    """Check the packages against their pins and the machine against what each notebook needs."""
    pins, mins = read_pins(), read_minimums()
    broken = import_problems([p.module for p in PACKAGES if _installed(p) is not None])
    gpu = "torch" not in broken and triton_gpu()
    venv = check_venv()
    fix = elsewhere_fix(venv)
    packages = ([check_python()] + ([venv] if venv else []) + [check_course_packages(foreign=venv is not None
                                                                                     and venv.status != OK)]
                + [check_package(p, pins, mins, gpu, broken.get(p.module), fix) for p in PACKAGES]
                + check_dependencies(pins, fix))
    return EnvironmentReport(packages, check_machine(torch_imports="torch" not in broken) + [check_data()])


def main(argv: list[str] | None = None) -> int:
    """Print the environment table; exit status 1 when any row is FAIL."""
    argparse.ArgumentParser(prog="python -m gptoss_edu.env", description=main.__doc__).parse_args(argv)  # --help
    report = check_environment()
    print(report)
    return 0 if report.ok else 1


# `python -m gptoss_edu doctor`: the command-line interface's add_arguments/run pair.
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The doctor command takes no arguments."""


def run(args: argparse.Namespace) -> int:
    """Print the environment table (the doctor command)."""
    return main([])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
