"""The processes of the browser tests: a JupyterLab server and a headless Chromium.

The server runs on 127.0.0.1 with a random token, on a temporary copy of the notebooks, in a
process group of its own; every process it starts (kernels run in sessions of their own) and
every Chromium process carries a marker in its environment, so teardown can find and stop
them all, and check that none is left.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("GPTOSS_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium tries to reach Google's services, and a
# closed network refuses it; --disable-dev-shm-usage keeps small /dev/shm mounts from crashing it.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
MARKER = "GPTOSS_BROWSER_TEST"  # environment variable set on every process the suite starts
VIEWPORT = {"width": 1400, "height": 1000}

# JupyterLab user settings for the test server: every cell in the DOM (no windowing, so
# off-screen cells can be read), and no news or update pop-ups over the notebook.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_entries() -> list[Path]:
    """The /proc folder of every process (none where there is no /proc: not Linux)."""
    proc = Path("/proc")
    return [p for p in proc.iterdir() if p.name.isdigit()] if proc.is_dir() else []


def marked_processes(tag: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose environment carries MARKER=tag."""
    needle = f"{MARKER}={tag}".encode()
    found = []
    for entry in proc_entries():
        if int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state != "Z":  # a zombie is already dead; its parent only has to reap it
            found.append((int(entry.name), cmd))
    return found


def stop_marked(tag: str, grace: float = 5.0) -> list[tuple[int, str]]:
    """SIGTERM, then SIGKILL, every process marked with tag; returns the ones that needed it."""
    victims = marked_processes(tag)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, _ in marked_processes(tag):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + grace
        while marked_processes(tag) and time.monotonic() < end:
            time.sleep(0.1)
    return victims


def write_lab_settings(folder: Path) -> None:
    """The JupyterLab user settings above, as files under folder."""
    for name, value in LAB_SETTINGS.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def strip_outputs(path: Path) -> None:
    """Clear a notebook's stored outputs and execution counts, so only this run's can show."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb.get("metadata", {}).pop("widgets", None)  # saved widget state would render without a kernel
    path.write_text(json.dumps(nb, indent=1))


def notebook_uses_explorer(path: Path) -> bool:
    """Whether a notebook's code builds an Explorer (directly or through gptoss_edu.widgets)."""
    cells = json.loads(path.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return "gptoss_edu.widgets" in code or "Explorer(" in code


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies, even by SIGKILL, so a
    killed test run leaves no server (the server then stops its kernels itself)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


class LabServer:
    """A JupyterLab server in its own process group; stop() leaves no process of it behind."""

    def __init__(self, command: list[str], cwd: Path, root_dir: Path, work: Path, tag: str,
                 record_browser_url: Path | None = None) -> None:
        """Start `command` (a `jupyter lab ...` line) in cwd; with record_browser_url, the server
        'opens a browser' by writing the address it would open to that file, as for a learner."""
        self.token, self.port, self.tag = secrets.token_hex(16), free_port(), tag
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "jupyter-lab.log"
        for sub in ("settings", "workspaces", "runtime"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        write_lab_settings(work / "settings")
        # CUDA_VISIBLE_DEVICES empty: the notebooks run as on CI, without a GPU, whatever this machine has
        # (on a GPU notebook 12 would reach for the real 13 GB checkpoint).
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", JUPYTERLAB_SETTINGS_DIR=str(work / "settings"),
                   JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"),
                   JUPYTER_RUNTIME_DIR=str(work / "runtime"), **{MARKER: tag})
        env.pop("JUPYTER_TOKEN", None)
        root_flag = ["--allow-root"] if os.geteuid() == 0 and "--allow-root" not in command else []
        if record_browser_url is None:
            browser = ["--no-browser"]
        else:  # webbrowser runs this command with the address in place of %s
            recorder = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"
            browser = ["--ServerApp.open_browser=True", "--ServerApp.browser="
                       + shlex.join([sys.executable, "-c", recorder, str(record_browser_url)]) + " %s"]
        self.argv = [*command, *root_flag, *browser, f"--ServerApp.token={self.token}",
                     "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
                     "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root_dir}"]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=die_with_parent)

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log, for failure messages."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def api(self, path: str, method: str = "GET", timeout: float = 5.0):
        """Call the server's REST API with the token; returns the decoded JSON (or None)."""
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until the server answers; raise with its log if it exits or stays silent."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with code {self.proc.returncode} before it "
                                   f"answered; its log ends:\n{self.log_tail()}")
            try:
                self.api("/api/status", timeout=2)
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.25)
        raise RuntimeError(f"jupyter lab did not answer on {self.base} within {timeout:.0f} s; "
                           f"its log ends:\n{self.log_tail()}")

    def url(self, path: str, **query: str) -> str:
        """The address of a lab page (e.g. lab/tree/<notebook>) with the token."""
        extra = "".join(f"&{k}={v}" for k, v in query.items())
        return f"{self.base}/{path}?token={self.token}{extra}"

    def shutdown_kernels(self) -> None:
        """Stop every kernel the server runs (between notebooks, to free memory and CPU)."""
        try:
            for kernel in self.api("/api/kernels"):
                self.api(f"/api/kernels/{kernel['id']}", method="DELETE", timeout=15)
        except (urllib.error.URLError, OSError):
            pass

    def stop(self) -> list[tuple[int, str]]:
        """Shut the server down (kernels first), then kill what remains; returns what had to be killed."""
        if self.proc.poll() is None:
            try:  # the polite way: the server stops its kernels and exits
                self.api("/api/shutdown", method="POST", timeout=10)
                self.proc.wait(timeout=20)
            except (urllib.error.URLError, OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=10)
        self._log.close()
        return stop_marked(self.tag)


class Browser:
    """Headless Debian Chromium driven by Playwright, with a fresh profile; close() ends it."""

    def __init__(self, profile: Path, tag: str) -> None:
        from playwright.sync_api import sync_playwright

        self.tag = tag
        self._pw = sync_playwright().start()
        try:
            self.context = self._pw.chromium.launch_persistent_context(
                str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                env={**os.environ, MARKER: tag}, viewport=VIEWPORT, timeout=60_000)
        except Exception:
            self._pw.stop()
            raise

    def new_page(self):
        """A new tab."""
        return self.context.new_page()

    def close(self) -> list[tuple[int, str]]:
        """Close Chromium and Playwright's driver; returns the Chromium processes that had to be killed."""
        try:
            self.context.close()
        finally:
            self._pw.stop()
        killed = stop_marked(self.tag)
        end = time.monotonic() + 10
        while playwright_drivers() and time.monotonic() < end:
            time.sleep(0.1)
        return killed


def playwright_drivers() -> list[tuple[int, str]]:
    """Playwright driver processes this test process started and that are still running."""
    return [(pid, cmd) for pid, cmd in children_of(os.getpid()) if "playwright" in cmd]


def children_of(parent: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live child processes of parent."""
    found = []
    for entry in proc_entries():
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if int(stat[1]) == parent and stat[0] != "Z":
            found.append((int(entry.name), cmd))
    return found


def copy_tree(src: Path, dst: Path, strip: bool) -> None:
    """Copy a folder's notebooks (and any other files) to dst; optionally clear their outputs."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    if strip:
        for nb in dst.rglob("*.ipynb"):
            strip_outputs(nb)
