"""Notebook 13's explorer: the loss curves of training runs, smoothed, side by side."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from ..train import TrainResult
from . import Explorer


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over ``window`` values (the first ones average what there is so far)."""
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    n = np.arange(1, len(v) + 1)
    lo = np.maximum(0, n - window)
    return (c[n] - c[lo]) / (n - lo)


# Nine of each: notebook 13 compares nine runs, one per course step.
LINE_STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (10, 3)), (0, (3, 5, 1, 5)), (0, (5, 1)),
               (0, (1, 3)))
VAL_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h")


def plot_losses(ax: Axes, runs: Mapping[str, TrainResult], smoothing: int = 10, show_val: bool = True,
                x_axis: str = "tokens", colours: Mapping[str, str] | None = None) -> None:
    """Training loss (smoothed line) and validation loss (dots) of each run against tokens or steps."""
    if x_axis not in ("tokens", "steps"):
        raise ValueError(f"x_axis must be 'tokens' or 'steps', got {x_axis!r}")
    for i, (name, run) in enumerate(runs.items()):
        per_step = run.train_config.batch_size * run.train_config.seq_len if x_axis == "tokens" else 1
        steps = np.array([h["step"] for h in run.history])
        colour = colours[name] if colours else f"C{i}"
        # Neighbouring shades of one colour are hard to tell apart (with a colour-vision deficiency, more so):
        # each run has a line style and a marker of its own too, kept by its place among all the runs.
        order = list(colours).index(name) if colours and name in colours else i
        ax.plot(steps * per_step, smooth([h["loss"] for h in run.history], smoothing), color=colour, lw=1.2,
                ls=LINE_STYLES[order % len(LINE_STYLES)], label=f"{name} (train)")
        if show_val and run.evals:
            ax.plot([e["step"] * per_step for e in run.evals], [e["val_loss"] for e in run.evals],
                    VAL_MARKERS[order % len(VAL_MARKERS)], color=colour, ms=4, label=f"{name} (val)")
    ax.set_xlabel("tokens seen" if x_axis == "tokens" else "optimizer step")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    # Every run starts near ln(vocabulary), far above where runs differ: the axis ends a little above the
    # highest loss a run finishes at, so the gaps between runs fill the picture (the start is clipped, and said).
    ends = [smooth([h["loss"] for h in r.history], smoothing)[-1] for r in runs.values() if r.history]
    starts = [r.history[0]["loss"] for r in runs.values() if r.history]
    note = None
    if ends and max(starts) > max(ends) + 1.5:
        ax.set_ylim(None, max(ends) + 1.5)
        note = f"curves start near {max(starts):.1f}, above the axis"
    # The note heads the legend: wherever the legend goes, it cannot land on the note.
    ax.legend(fontsize=8, title=note, title_fontsize=8)


def run_colours(names: Sequence[str]) -> dict[str, str]:
    """A colour per run: the first blue and the last orange (GPT-2 and gpt-oss everywhere), a ramp between."""
    # The course's steps lie between GPT-2 and gpt-oss: shades of purple, light to dark, keep their
    # order and leave blue and orange to the two ends. A run keeps its colour when others are hidden.
    names = list(names)
    between = names[1:-1]
    ramp = plt.get_cmap("Purples")(np.linspace(0.55, 0.95, len(between))) if between else []  # 0.4 is too pale
    shades = {n: to_hex(c) for n, c in zip(between, ramp)}
    # In the runs' order, which plot_losses reads to give each run its line style and marker.
    return {n: "C0" if n == names[0] else "C1" if n == names[-1] else shades[n] for n in names}


def loss_explorer(runs: Mapping[str, TrainResult], shown: Sequence[str] | None = None) -> Explorer:
    """Pick runs, the smoothing window and the x axis; the figure shows their loss curves."""
    if not runs:
        raise ValueError("loss_explorer needs at least one finished run")
    names = list(runs)
    colours = run_colours(names)
    shown = tuple(shown) if shown is not None else tuple(names[:2])
    unknown = set(shown) - set(names)
    if unknown:
        raise KeyError(f"no run(s) {sorted(unknown)}; the runs are {', '.join(names)}")
    # The curves only: the explorer lives as long as the kernel, and need not keep models and optimizers.
    runs = {n: dataclasses.replace(r, model=None, optimizer=None) for n, r in runs.items()}

    def draw(fig: Figure, runs_shown: tuple[str, ...], smoothing: int, show_val: bool, x_axis: str) -> None:
        ax = fig.subplots()
        picked = {n: runs[n] for n in names if n in runs_shown}
        if not picked:
            ax.text(0.5, 0.5, "pick at least one run", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            return
        plot_losses(ax, picked, smoothing, show_val, x_axis, colours)
        # A run with no step recorded (a hand-made or loaded result) draws nothing and sets no limit.
        lows = [min(smooth([h["loss"] for h in r.history], smoothing)) for r in picked.values() if r.history]
        if show_val:  # a smoothed curve lags above the loss: the val dots may sit lower, and must stay in view
            lows += [e["val_loss"] for r in picked.values() for e in r.evals]
        if lows:
            ax.set_ylim(min(lows) - 0.3, ax.get_ylim()[1])
        ax.set_title(f"loss while training (trailing mean over {smoothing} step{'s' if smoothing > 1 else ''})",
                     fontsize=10)

    return Explorer(
        "Loss curves",
        draw,
        {
            "runs_shown": widgets.SelectMultiple(options=names, value=shown, rows=min(8, len(names)),
                                                 description="runs"),
            "smoothing": widgets.IntSlider(value=10, min=1, max=50, description="smoothing"),
            "show_val": widgets.Checkbox(value=True, description="val loss"),
            "x_axis": widgets.ToggleButtons(options=["tokens", "steps"], value="tokens", description="x axis"),
        },
        figsize=(8.0, 4.0),
    )
