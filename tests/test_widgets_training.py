"""Notebook 13's loss explorer: its controls redraw, and it plots the runs it was given."""

from __future__ import annotations

import numpy as np
import pytest

import gptoss_edu as g
from gptoss_edu.train import TrainConfig, TrainResult
from matplotlib.colors import to_hex

from gptoss_edu.widgets.training import loss_explorer, run_colours, smooth


def fake_run(offset: float) -> TrainResult:
    """A finished run's record without training: losses falling from 10 + offset."""
    cfg = TrainConfig(steps=40, batch_size=2, seq_len=8, warmup_steps=1)
    run = TrainResult(model=None, model_config=g.course_config(1), train_config=cfg)
    run.history = [{"step": s, "loss": 10 + offset - 0.1 * s + 0.3 * np.sin(s)} for s in range(1, 41)]
    run.evals = [{"step": s, "val_loss": 10 + offset - 0.1 * s} for s in (20, 40)]
    return run


def test_smoothing_is_a_trailing_mean():
    assert np.allclose(smooth([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])
    assert np.allclose(smooth([5, 7], 1), [5, 7])


def test_every_control_redraws_and_the_curves_are_the_runs():
    ex = loss_explorer({"gpt2": fake_run(0.0), "gpt-oss": fake_run(-1.0)})
    ax = ex.figure.axes[0]
    assert [l.get_label() for l in ax.get_lines()] == ["gpt2 (train)", "gpt2 (val)", "gpt-oss (train)", "gpt-oss (val)"]
    assert ax.get_lines()[1].get_xdata().tolist() == [20 * 16, 40 * 16]  # tokens: steps x batch x seq_len
    seen = {ex.fingerprint()}
    for change in ({"smoothing": 1}, {"show_val": False}, {"x_axis": "steps"}, {"runs_shown": ("gpt-oss",)}):
        ex.set(**change)
        seen.add(ex.fingerprint())
    assert len(seen) == 5
    assert [l.get_label() for l in ex.figure.axes[0].get_lines()] == ["gpt-oss (train)"]
    assert ex.figure.axes[0].get_lines()[0].get_color() == "C1"  # its colour stays when gpt2 is hidden
    assert ex.figure.axes[0].get_xlabel() == "optimizer step"
    ex.set(runs_shown=())
    assert "pick at least one run" in ex.figure.axes[0].texts[0].get_text()


def test_the_ends_keep_gpt2_and_gpt_oss_colours_and_the_steps_between_get_others():
    """Blue for the first run and orange for the last, as in every other figure of GPT-2 and gpt-oss."""
    names = ["01 GPT-2", "02 RoPE", "03 RMSNorm", "09 gpt-oss"]
    ex = loss_explorer({n: fake_run(-0.2 * i) for i, n in enumerate(names)}, shown=names)
    trains = [l for l in ex.figure.axes[0].get_lines() if l.get_label().endswith("(train)")]
    colours = [to_hex(l.get_color()) for l in trains]
    assert colours[0] == to_hex("C0") and colours[-1] == to_hex("C1")
    assert len(set(colours)) == 4 and not {to_hex("C0"), to_hex("C1")} & set(colours[1:-1])
    ex.set(runs_shown=("03 RMSNorm",))
    assert to_hex(ex.figure.axes[0].get_lines()[0].get_color()) == colours[2]  # the same colour alone
    assert run_colours(["only"]) == {"only": "C0"}


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="at least one"):
        loss_explorer({})
    with pytest.raises(KeyError, match="no run"):
        loss_explorer({"a": fake_run(0)}, shown=["b"])


# ---- found by mutation testing: the numbers and labels behind the picture ------------------------------

def trailing_mean(values, window):
    return [float(np.mean(values[max(0, i + 1 - window): i + 1])) for i in range(len(values))]


@pytest.mark.parametrize("smoothing", [1, 5, 10])
def test_train_line_is_the_trailing_mean_and_the_title_names_it(smoothing):
    run = fake_run(0.0)
    ex = loss_explorer({"a": run})
    ex.set(smoothing=smoothing)
    ax = ex.figure.axes[0]
    losses = [h["loss"] for h in run.history]
    assert ax.get_lines()[0].get_ydata() == pytest.approx(trailing_mean(losses, smoothing))
    plural = "s" if smoothing > 1 else ""
    assert ax.get_title() == f"loss while training (trailing mean over {smoothing} step{plural})"


def test_heavy_smoothing_never_hides_the_val_points():
    """A trailing mean lags above a falling loss; the val dots below it must stay inside the axes."""
    ex = loss_explorer({"gpt2": fake_run(0.0)})
    for smoothing in (1, 20, 50):
        ex.set(smoothing=smoothing)
        low = ex.figure.axes[0].get_ylim()[0]
        assert low < min(e["val_loss"] for e in fake_run(0.0).evals), (smoothing, low)


def test_the_steps_between_are_purples_light_to_dark():
    import matplotlib.pyplot as plt

    names = ["01 GPT-2", "02 RoPE", "03 RMSNorm", "04 GQA", "09 gpt-oss"]
    ramp = [to_hex(c) for c in plt.get_cmap("Purples")(np.linspace(0.55, 0.95, 3))]
    assert run_colours(names) == {"01 GPT-2": "C0", "02 RoPE": ramp[0], "03 RMSNorm": ramp[1], "04 GQA": ramp[2],
                                  "09 gpt-oss": "C1"}


def test_a_run_shown_alone_from_the_start_has_its_colour_among_all_runs():
    names = ["01 GPT-2", "02 RoPE", "09 gpt-oss"]
    ex = loss_explorer({n: fake_run(-0.2 * i) for i, n in enumerate(names)}, shown=("02 RoPE",))
    assert to_hex(ex.figure.axes[0].get_lines()[0].get_color()) == to_hex(run_colours(names)["02 RoPE"])


def test_a_run_with_no_steps_recorded_draws_nothing_and_breaks_nothing():
    empty = TrainResult(model=None, model_config=g.course_config(1), train_config=fake_run(0.0).train_config)
    ex = loss_explorer({"a": fake_run(0.0), "empty": empty}, shown=("empty",))  # once: min() of an empty sequence
    ex.set(runs_shown=("a", "empty"), smoothing=50, show_val=False)
    lines = {l.get_label(): len(l.get_xdata()) for l in ex.figure.axes[0].get_lines()}
    assert lines == {"a (train)": 40, "empty (train)": 0}
    lowest = min(smooth([h["loss"] for h in fake_run(0.0).history], 50))
    assert ex.figure.axes[0].get_ylim()[0] == pytest.approx(lowest - 0.3)  # set by the run that has steps


def test_the_axis_shows_where_runs_finish_not_where_they_all_start():
    """Losses fall from ln(vocabulary) (10.8 for GPT-2's): the axis ends above the highest finish and says so."""
    def falling(offset):
        run = fake_run(offset)
        run.history = [{"step": s, "loss": 11.0 if s == 1 else 5.0 + offset - 0.01 * s} for s in range(1, 41)]
        return run

    ex = loss_explorer({"gpt2": falling(0.0), "gpt-oss": falling(-0.5)})
    ex.set(smoothing=1)
    ax = ex.figure.axes[0]
    low, high = ax.get_ylim()
    assert high == pytest.approx(5.0 - 0.4 + 1.5) and low < 4.1  # the highest finish (gpt2: 4.6) + 1.5
    assert ax.get_legend().get_title().get_text() == "curves start near 11.0, above the axis"  # never under it
    flat = falling(0.0)
    flat.history[0]["loss"] = 5.0  # a run that falls little: nothing clipped, nothing said
    ex = loss_explorer({"gpt2": flat})
    assert ex.figure.axes[0].get_legend().get_title().get_text() == ""


def test_the_explorer_keeps_the_curves_not_the_models_and_optimizers():
    """A widget lives as long as the kernel: notebook 13's explorers kept every run's model and AdamW state."""
    import gc
    import weakref

    import torch

    runs = {"gpt2": fake_run(0.0), "gpt-oss": fake_run(-1.0)}
    held = []
    for run in runs.values():
        run.model, run.optimizer = torch.nn.Linear(2, 2), torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())
        held += [weakref.ref(run.model), weakref.ref(run.optimizer)]
    ex = loss_explorer(runs)
    del runs, run
    gc.collect()
    assert [h() for h in held] == [None] * 4
    ex.set(runs_shown=("gpt2", "gpt-oss"), smoothing=1)  # and it still draws both
    assert len(ex.figure.axes[0].get_lines()) == 4


def test_each_run_keeps_a_line_style_and_marker_of_its_own_when_others_are_hidden():
    """Shades of purple alone are hard to tell apart: a run's style comes from its place among all the runs."""
    runs = {name: fake_run(-0.1 * i) for i, name in enumerate(["01", "02a", "02", "03", "04", "05", "06", "07", "09"])}
    assert list(run_colours(list(runs))) == list(runs)  # in the runs' order
    ex = loss_explorer(runs, shown=list(runs))
    # get_linestyle() calls every custom dash pattern "--": compare the patterns themselves.
    styles = {l.get_label(): (str(l._unscaled_dash_pattern), l.get_marker()) for l in ex.figure.axes[0].get_lines()}
    train = [styles[f"{n} (train)"][0] for n in runs]
    val = [styles[f"{n} (val)"][1] for n in runs]
    assert len(set(train)) == len(set(val)) == 9  # notebook 13's nine steps
    ex.set(runs_shown=("02", "03"))
    kept = {l.get_label(): (str(l._unscaled_dash_pattern), l.get_marker()) for l in ex.figure.axes[0].get_lines()}
    assert kept == {k: v for k, v in styles.items() if k.startswith(("02 ", "03 "))}
