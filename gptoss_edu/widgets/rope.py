"""Notebook 02's explorer: rotary embeddings turn q and k with position; their dot product sees only the offset."""

from __future__ import annotations

import math

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure

from ..rotary import apply_rotary, rope_inv_freq
from . import Explorer


def rotate_at(x: torch.Tensor, position: int, inv_freq: torch.Tensor) -> torch.Tensor:
    """``x`` [d] rotated to ``position`` (half-split pairs, as gpt-oss)."""
    angles = position * inv_freq.double()
    return apply_rotary(x.double()[None], angles.cos()[None], angles.sin()[None])[0]


def scores_by_offset(q: torch.Tensor, k: torch.Tensor, inv_freq: torch.Tensor, query_pos: int,
                     offsets: np.ndarray) -> np.ndarray:
    """q at ``query_pos`` dotted with k at ``query_pos - offset``, for each offset."""
    qr = rotate_at(q, query_pos, inv_freq)
    return np.array([float(qr @ rotate_at(k, query_pos - int(o), inv_freq)) for o in offsets])


def rope_explorer(head_dim: int = 16, theta: float = 10000.0, max_pos: int = 64, seed: int = 0) -> Explorer:
    """Sliders over the query and key positions, a shift of both, and the frequency pair shown."""
    if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim % 2 or head_dim < 2:
        raise ValueError(f"RoPE pairs dimensions, so head_dim must be an even whole number (2 or more); got {head_dim!r}")
    if isinstance(max_pos, bool) or not isinstance(max_pos, int) or max_pos < 1:
        raise ValueError(f"max_pos is the positions the sliders offer, a whole number >= 1, got {max_pos!r}")
    gen = torch.Generator().manual_seed(seed)
    q, k = torch.randn(head_dim, generator=gen), torch.randn(head_dim, generator=gen)
    inv_freq = rope_inv_freq(head_dim, theta)
    half = head_dim // 2
    offsets = np.arange(-max_pos + 1, max_pos)

    def draw(fig: Figure, query: int, key: int, shift: int, pair: int) -> None:
        m, n = query + shift, key + shift
        qr, kr = rotate_at(q, m, inv_freq), rotate_at(k, n, inv_freq)
        plane, curve = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
        # Left: pair ``pair`` is the 2-D vector (x[pair], x[pair + d/2]); it turns by position * theta_pair.
        for vec, rot, colour, name, pos in ((q, qr, "#1f77b4", "q", m), (k, kr, "#d62728", "k", n)):
            a, b = float(vec[pair]), float(vec[pair + half])
            ra, rb = float(rot[pair]), float(rot[pair + half])
            plane.annotate("", xy=(a, b), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=colour, alpha=0.6,
                                                                          ls="--"))
            plane.annotate("", xy=(ra, rb), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=colour, lw=2))
            plane.text(ra * 1.08, rb * 1.08, f"{name} at {pos}", color=colour, fontsize=8)
        r = max(float(q[[pair, pair + half]].norm()), float(k[[pair, pair + half]].norm())) * 1.35
        plane.set_xlim(-r, r)
        plane.set_ylim(-r, r)
        plane.set_aspect("equal")
        plane.axhline(0, color="#ccc", lw=0.5)
        plane.axvline(0, color="#ccc", lw=0.5)
        wavelength = 2 * math.pi / float(inv_freq[pair])
        turn = f"{wavelength:,.0f}" if wavelength >= 100 else f"{wavelength:.3g}"  # 19,869, not 1.99e+04
        plane.set_title(f"pair {pair}: dims ({pair}, {pair + half})\nturns once every {turn} positions", fontsize=9)
        plane.text(0.02, 0.02, "dashed: before turning", transform=plane.transAxes, fontsize=7, color="#666")
        plane.set_xlabel(f"x[{pair}]")
        plane.set_ylabel(f"x[{pair + half}]")
        # Right: the full score depends only on the offset m - n, whatever the shift.
        base = scores_by_offset(q, k, inv_freq, query_pos=max_pos, offsets=offsets)
        moved = scores_by_offset(q, k, inv_freq, query_pos=max_pos + shift, offsets=offsets)
        curve.plot(offsets, base, color="#888", lw=2.5, label=f"q at {max_pos}, k at {max_pos} - offset")
        curve.plot(offsets, moved, color="#ff7f0e", lw=1, ls="--", label=f"both shifted by {shift}")
        score = float(qr @ kr)
        curve.plot([m - n], [score], "o", color="black", label=f"q at {m}, k at {n}: {score:.3f}")
        curve.set_xlabel("offset m - n (query position - key position)")
        curve.set_ylabel("score q . k")
        curve.set_title("the score depends only on the offset", fontsize=9)
        curve.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)  # below: off the curve

    return Explorer(
        "RoPE: q and k turn with position",
        draw,
        {
            "query": widgets.IntSlider(value=10, min=0, max=max_pos - 1, description="q position"),
            "key": widgets.IntSlider(value=4, min=0, max=max_pos - 1, description="k position"),
            "shift": widgets.IntSlider(value=0, min=0, max=1000, step=10, description="shift both"),
            "pair": widgets.IntSlider(value=0, min=0, max=half - 1, description="pair i"),
        },
        figsize=(9.0, 3.8),
    )
