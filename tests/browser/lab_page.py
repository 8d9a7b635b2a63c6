"""What the browser tests do in JupyterLab's page: open a notebook, run all its cells, save it,
check its widgets, and move each Explorer's controls while watching its figure.

Playwright's sync API; `page` is a Playwright Page showing JupyterLab.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab_server import LabServer

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

KERNEL_IDLE_JS = """() => {
  const item = [...document.querySelectorAll('#jp-main-statusbar .jp-StatusBar-TextItem')]
    .find(e => / \\| (Idle|Busy|Starting|Restarting|Connecting|Initializing|Unknown|Dead)/.test(e.textContent));
  return item ? item.textContent : '';
}"""

PROMPTS_JS = """() => [...document.querySelectorAll(
  '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt')].map(e => e.textContent.trim())"""


def kernel_status(page) -> str:
    """The kernel status word JupyterLab's status bar shows for the current notebook ('' if none)."""
    text = page.evaluate(KERNEL_IDLE_JS)
    return text.rsplit("|", 1)[1].strip() if "|" in text else ""


def open_notebook(page, server: LabServer, relpath: str, timeout_s: float) -> None:
    """Open a notebook in JupyterLab (fresh workspace) and wait until its kernel is idle."""
    page.goto(server.url(f"lab/tree/{relpath}", reset=""), timeout=timeout_s * 1000)
    wait_notebook_ready(page, timeout_s)


def wait_notebook_ready(page, timeout_s: float) -> None:
    """Wait for the current notebook's cells and an idle kernel."""
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell", timeout=timeout_s * 1000)
    page.wait_for_function(f"() => ({KERNEL_IDLE_JS})().endsWith('| Idle')", timeout=timeout_s * 1000)


@dataclass
class RunResult:
    """What Run All Cells left on the page and in the saved notebook."""

    seconds: float
    prompts: list[str]
    errors: list[str] = field(default_factory=list)       # "cell N: ename: evalue"
    unexecuted: list[int] = field(default_factory=list)   # code cells (0-based among all cells)
    widget_outputs: int = 0                               # widget views in the saved notebook


def run_all_cells(page, saved_path: Path, timeout_s: float) -> RunResult:
    """Run All Cells from the Run menu, wait for the kernel to finish, save, and read the result."""
    start = time.monotonic()
    menu_command(page, "Run", "Run All Cells")
    # Done when no cell is queued or running ([*]) and the kernel says idle, twice in a row
    # (a cell's prompt turns to [*] the moment Run All queues it, so nothing is missed).
    quiet, dead_since = 0, None
    while True:
        prompts, status = page.evaluate(PROMPTS_JS), kernel_status(page)
        busy = any("*" in p for p in prompts) or status != "Idle"
        quiet = 0 if busy else quiet + 1
        if quiet >= 2:
            break
        dead_since = (dead_since or time.monotonic()) if status in ("Dead", "Restarting") else None
        if dead_since and time.monotonic() - dead_since > 5:
            raise RuntimeError(f"the kernel died during Run All Cells (status {status!r}; prompts: "
                               f"{' '.join(prompts)}): out of memory, or a crash in native code?")
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"Run All Cells had not finished after {timeout_s:.0f} s, what was left "
                               f"of the notebook's --browser-timeout (prompts: {' '.join(prompts)}); "
                               f"raise --browser-timeout if the notebook is meant to take that long")
        time.sleep(0.5)
    seconds = time.monotonic() - start
    save_notebook(page, saved_path, timeout_s=60)
    result = RunResult(seconds=seconds, prompts=prompts)
    for i, cell in enumerate(json.loads(saved_path.read_text())["cells"]):
        if cell["cell_type"] != "code":
            continue
        if cell["execution_count"] is None:
            result.unexecuted.append(i)
        tags = cell.get("metadata", {}).get("tags", [])
        for out in cell["outputs"]:
            if out["output_type"] == "error" and "raises-exception" not in tags:
                result.errors.append(f"cell {i}: {out['ename']}: {out['evalue']}")
            if WIDGET_MIME in out.get("data", {}):
                result.widget_outputs += 1
    return result


def menu_command(page, menu: str, item: str) -> None:
    """Click a menu bar menu, then one of its items, by their labels."""
    page.locator(f".lm-MenuBar-item:has(.lm-MenuBar-itemLabel:text-is('{menu}'))").click()
    page.locator(f".lm-Menu-item:has(.lm-Menu-itemLabel:text-is('{item}'))").click()


def save_notebook(page, path: Path, timeout_s: float) -> None:
    """Save the current notebook from the File menu and wait until the file on disk is new."""
    before = path.stat().st_mtime_ns
    menu_command(page, "File", "Save Notebook")
    end = time.monotonic() + timeout_s
    while path.stat().st_mtime_ns == before:
        if time.monotonic() > end:
            raise TimeoutError(f"JupyterLab did not save {path.name} within {timeout_s:.0f} s")
        time.sleep(0.2)
    time.sleep(0.3)  # let the write finish before it is read


WIDGET_PROBLEMS_JS = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  const problems = [];
  for (const out of panel.querySelectorAll('.jp-OutputArea-output')) {
    const text = out.textContent || '';
    if (text.includes('Error displaying widget'))
      problems.push('a widget output says: ' + text.trim().slice(0, 200));
    if (out.dataset.mimeType === 'text/plain' && /^Explorer\\(/.test(text.trim()))
      problems.push('an Explorer shows as text, not as a widget (is jupyterlab_widgets installed?): ' + text.trim());
  }
  for (const img of panel.querySelectorAll('img.widget-image'))
    if (img.style.display !== 'none' && (!img.complete || img.naturalWidth === 0))
      problems.push('an image widget shows no picture');
  for (const html of panel.querySelectorAll('.widget-html'))
    if ((html.textContent || '').includes('could not draw'))
      problems.push('an Explorer says: ' + html.textContent.trim().slice(0, 200));
  return problems;
}"""

# The widget renderer puts the view's element straight into the output (no data-mime-type).
RENDERED_WIDGETS_JS = """() => document.querySelectorAll(
  '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output > .jupyter-widgets').length"""


def widget_problems(page) -> list[str]:
    """Widgets that failed to render, as sentences ([] when every widget shows)."""
    return page.evaluate(WIDGET_PROBLEMS_JS)


def rendered_widget_count(page) -> int:
    """How many widget outputs rendered a widget view."""
    return page.evaluate(RENDERED_WIDGETS_JS)


# An Explorer in the DOM: a VBox of [HTML title, HBox of controls, Image].
EXPLORERS_SELECTOR = (".jp-NotebookPanel:not(.lm-mod-hidden) .widget-vbox"
                      ":has(> .widget-html + .widget-hbox + img.widget-image)")

IMAGE_HASH_JS = """async (img) => {
  const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return [...digest].map(b => b.toString(16).padStart(2, '0')).join('').slice(0, 16) + ':' + bytes.length;
}"""


@dataclass
class ControlTry:
    """One move of one control: what it showed before and after, and whether the picture changed."""

    kind: str
    label: str
    before: str
    after: str
    changed: bool

    def __str__(self) -> str:
        verdict = "changed the figure" if self.changed else "left the figure as it was"
        return f"{self.kind} {self.label!r}: {self.before} -> {self.after} {verdict}"


@dataclass
class ExplorerReport:
    """What moving an Explorer's controls did."""

    title: str
    kinds: dict[str, int]                       # control kind -> how many the explorer has
    tries: list[ControlTry] = field(default_factory=list)
    screenshot: str = ""

    def problems(self) -> list[str]:
        """Sentences for what is wrong: no control to move, or a kind of control that changed nothing."""
        if not any(self.kinds.get(k) for k in CONTROL_KINDS):
            return [f"explorer {self.title!r} has no slider, dropdown, toggle buttons or checkbox "
                    f"to move (controls seen: {self.kinds})"]
        out = []
        for kind in CONTROL_KINDS:
            tried = [t for t in self.tries if t.kind == kind]
            if self.kinds.get(kind) and not any(t.changed for t in tried):
                out.append(f"explorer {self.title!r}: no {kind} changed the figure "
                           f"({'; '.join(map(str, tried)) or 'none could be moved'})")
        return out


CONTROL_KINDS = ("slider", "dropdown", "toggle buttons", "checkbox")
# The controls are the HBox's children (a toggle-buttons widget nests a second element of its class).
CONTROL_SELECTORS = {
    "slider": "> .widget-slider",
    "dropdown": "> .widget-dropdown",
    "toggle buttons": "> .widget-toggle-buttons",
    "checkbox": "> .widget-checkbox",
}


def image_hash(image) -> str:
    """A hash of the bytes an image widget shows (retried: a redraw revokes the old blob URL)."""
    for attempt in range(20):
        try:
            return image.evaluate(IMAGE_HASH_JS)
        except Exception:
            if attempt == 19:
                raise
            time.sleep(0.1)
    raise AssertionError("unreachable")


def wait_for_change(page, image, before: str, timeout_s: float) -> bool:
    """True once the image differs from `before`; False when the kernel has been idle a while without it."""
    end, idle_since = time.monotonic() + timeout_s, None
    start = time.monotonic()
    while time.monotonic() < end:
        if image_hash(image) != before:
            return True
        if kernel_status(page) == "Idle":
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 1.5 and time.monotonic() - start > 2.0:
                return False
        else:
            idle_since = None
        time.sleep(0.2)
    return False


def wait_settled(page, image, timeout_s: float) -> str:
    """Wait until the kernel is idle and the image holds still (redraws of an earlier move
    must not count for the next control); returns the image's hash."""
    end, last = time.monotonic() + timeout_s, None
    while True:
        current = image_hash(image)
        if current == last and kernel_status(page) == "Idle":
            return current
        if time.monotonic() > end:
            raise TimeoutError(f"the explorer's figure kept changing for {timeout_s:.0f} s")
        last = current
        time.sleep(0.4)


def control_label(control) -> str:
    """A control's description (a checkbox keeps its own beside the box)."""
    for selector in ("> label.widget-label", ".widget-label-basic"):
        label = control.locator(selector).first
        text = (label.text_content() if label.count() else "") or ""
        text = text.replace("\u200b", "").strip()  # ipywidgets puts a zero-width space in empty labels
        if text:
            return text
    return "(no label)"


def move_slider(page, control) -> tuple[str, str]:
    """Press ArrowRight three times on the handle (ArrowLeft if it sits at its maximum)."""
    readout = control.locator(".widget-readout")
    handle = control.locator(".noUi-handle").first
    before = readout.text_content().strip() if readout.count() else handle.get_attribute("aria-valuenow")
    handle.focus()
    for key in ("ArrowRight", "ArrowLeft"):
        for _ in range(3):
            page.keyboard.press(key)
        after = readout.text_content().strip() if readout.count() else handle.get_attribute("aria-valuenow")
        if after != before:  # else it sat at its maximum, and ArrowLeft moves it down
            break
    return before, after


def move_dropdown(control) -> tuple[str, str]:
    """Pick the next option (the first one if the last is picked)."""
    select = control.locator("select")
    options = select.locator("option").all_text_contents()
    before = select.evaluate("s => s.options[s.selectedIndex] ? s.options[s.selectedIndex].text : ''")
    if len(options) < 2:
        return before, before
    index = (options.index(before) + 1) % len(options) if before in options else 0
    select.select_option(index=index)
    return before, options[index]


def move_toggle_buttons(control) -> tuple[str, str]:
    """Click the first button that is not the chosen one."""
    buttons = control.locator("button")
    texts = [t.strip() for t in buttons.all_text_contents()]
    chosen = control.locator("button.mod-active")
    before = chosen.first.text_content().strip() if chosen.count() else ""
    for i, text in enumerate(texts):
        if text != before:
            buttons.nth(i).click()
            return before, text
    return before, before


def move_checkbox(control) -> tuple[str, str]:
    """Tick or untick it."""
    box = control.locator("input[type=checkbox]")
    before = str(box.is_checked())
    box.click()
    return before, str(box.is_checked())


MOVERS = {"slider": lambda page, c: move_slider(page, c), "dropdown": lambda page, c: move_dropdown(c),
          "toggle buttons": lambda page, c: move_toggle_buttons(c),
          "checkbox": lambda page, c: move_checkbox(c)}


def explore(page, explorer, screenshot: Path, timeout_s: float) -> ExplorerReport:
    """Move the Explorer's controls, kind by kind, until one of each kind changes the figure."""
    explorer.scroll_into_view_if_needed()
    title = (explorer.locator("> .widget-html").first.text_content() or "").strip()
    controls_box = explorer.locator("> .widget-hbox").first
    image = explorer.locator("> img.widget-image").first
    kinds = {kind: controls_box.locator(sel).count() for kind, sel in CONTROL_SELECTORS.items()}
    kinds["other"] = controls_box.locator("> .jupyter-widgets").count() - sum(kinds.values())
    report = ExplorerReport(title=title, kinds=kinds)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    explorer.screenshot(path=str(screenshot.with_name(f"{screenshot.stem}-before.png")))
    for kind in CONTROL_KINDS:
        for i in range(kinds[kind]):
            control = controls_box.locator(CONTROL_SELECTORS[kind]).nth(i)
            before_hash = wait_settled(page, image, timeout_s)
            before, after = MOVERS[kind](page, control)
            changed = after != before and wait_for_change(page, image, before_hash, timeout_s)
            report.tries.append(ControlTry(kind, control_label(control), before, after, changed))
            if changed:
                break
    explorer.screenshot(path=str(screenshot))
    report.screenshot = str(screenshot)
    return report
