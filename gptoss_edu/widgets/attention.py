"""Notebook 06's explorer: a sliding window and a sink logit, and where the attention mass goes."""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure

from ..attention import attention_mask
from . import Explorer


def attention_probs(scores: torch.Tensor, window: int = 0,
                    sink: float | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax of scores [..., Tq, Tk] under the causal (and window) mask, and the sink's share [..., Tq].

    The last query sits at the last key's position (a prefill, or the newest queries of a decode).
    ``sink`` is one logit (or one per leading index, e.g. per head); None means no sink (share 0).
    """
    Tq, Tk = scores.shape[-2:]
    allowed = attention_mask(torch.arange(Tk - Tq, Tk), torch.arange(Tk), window)
    scores = scores.float().masked_fill(~allowed, float("-inf"))
    if sink is None:
        return torch.softmax(scores, dim=-1), torch.zeros(scores.shape[:-1])
    sink = torch.as_tensor(sink, dtype=torch.float32)[..., None, None].expand(*scores.shape[:-1], 1)
    probs = torch.softmax(torch.cat((scores, sink), dim=-1), dim=-1)
    return probs[..., :-1], probs[..., -1]


def example_scores(tokens: int, seed: int = 0, std: float = 1.5) -> torch.Tensor:
    """Random attention logits [tokens, tokens] (seeded: the picture only changes with the controls)."""
    return torch.randn(tokens, tokens, generator=torch.Generator().manual_seed(seed)) * std


def draw_window_sinks(fig: Figure, scores: torch.Tensor, window: int, sink: float, use_sink: bool) -> None:
    """Mask, attention weights with the sink as an extra column, and the sink's share per query."""
    T = scores.shape[-1]
    probs, share = attention_probs(scores, window, sink if use_sink else None)
    mask = attention_mask(torch.arange(T), torch.arange(T), window)
    ax_mask, ax_probs, ax_share = fig.subplots(1, 3, width_ratios=(1, 1.1, 0.9))

    ax_mask.imshow(mask.numpy(), cmap="Blues", vmin=0, vmax=1.4)
    ax_mask.set(title=f"mask: {'window ' + str(window) if window else 'full causal'}", xlabel="key",
                ylabel="query")
    keys = mask.sum(-1)
    ax_mask.text(T - 1, 0, f"keys per query: {int(keys.min())}..{int(keys.max())}", ha="right", va="top",
                 fontsize=7)

    # The weights with the sink's share as one more column, set apart by a gap.
    picture = np.full((T, T + 2), np.nan)
    picture[:, :T] = np.where(mask.numpy(), probs.numpy(), np.nan)  # masked keys blank, not a dark "zero"
    picture[:, T + 1] = share.numpy() if use_sink else np.nan
    im = ax_probs.imshow(picture, cmap="viridis", vmin=0, vmax=1)
    ax_probs.set_xticks([0, T // 2, T + 1], ["0", str(T // 2), "sink"])
    ax_probs.set(title="attention weights" + (f", sink logit {sink:g}" if use_sink else ", no sink"),
                 xlabel="key", ylabel="query")
    fig.colorbar(im, ax=ax_probs, shrink=0.8, label="weight")

    rows = np.arange(T)
    ax_share.barh(rows, share.numpy(), color="tab:purple", label="to the sink")
    ax_share.barh(rows, probs.sum(-1).numpy(), left=share.numpy(), color="tab:olive", alpha=0.6, label="to keys")
    ax_share.set(xlim=(0, 1), ylim=(T - 0.5, -0.5), xlabel="share of each query's mass",
                 title=f"mean sink share {share.mean():.1%}")
    ax_share.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)  # below: off the bars
    for ax in (ax_mask, ax_probs, ax_share):
        ax.title.set_fontsize(9)


def window_sink_explorer(tokens: int = 24, window: int = 8, sink: float = 0.0, use_sink: bool = True,
                         seed: int = 0) -> Explorer:
    """Sliders for the window and the sink logit over fixed random scores of ``tokens`` queries."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"tokens is how many queries (and keys) to draw, a whole number >= 1, got {tokens!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(f"window must be a whole number >= 0 (0 = the full causal mask), got {window!r}")
    if window > tokens:  # e.g. gpt-oss's 128 over the 24 tokens drawn
        raise ValueError(f"window={window} is wider than the {tokens} tokens drawn, where it would be the full causal "
                         f"mask (window 0): draw more tokens (tokens={window + 8}, say) or pick a window up to {tokens}")
    scores = example_scores(tokens, seed)
    style = {"description_width": "initial"}
    controls = {
        "window": widgets.IntSlider(value=window, min=0, max=tokens, description="window (0 = full)",
                                    style=style),
        "sink": widgets.FloatSlider(value=sink, min=-6.0, max=6.0, step=0.25, description="sink logit",
                                    style=style),
        "use_sink": widgets.Checkbox(value=use_sink, description="sink"),
    }

    def draw(fig: Figure, window: int, sink: float, use_sink: bool) -> None:
        controls["sink"].disabled = not use_sink  # without a sink its logit changes nothing: say so
        draw_window_sinks(fig, scores, window, sink, use_sink)

    return Explorer("Sliding window and attention sink", draw, controls, figsize=(10.0, 3.6),
                    asked={"window": window, "sink": sink})
