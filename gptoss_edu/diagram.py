"""A picture of the transformer block a config describes, with one step's change marked.

Orange marks what a notebook changes; lavender what it works on without changing it (notebook 10
runs the same parts as Triton kernels, notebook 11 looks at the token tables).
"""

from __future__ import annotations

from typing import Mapping

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch

from .config import ModelConfig

# What each course step changes, by the part of the picture it touches.
PARTS = ("embedding", "positions", "attn_norm", "attention", "mlp_norm", "mlp", "final_norm", "unembedding")
HIGHLIGHT = "#ffb347"  # changed by the step
FOCUS = "#d7c9ef"  # worked on by the step, unchanged
PLAIN = "#dce9f5"


def _window_label(cfg: ModelConfig) -> str:
    """Which layers slide a window, as the layers themselves say (cfg.window), not as the presets usually do."""
    layers = [i for i in range(cfg.n_layers) if cfg.window(i)]
    if not layers:
        return ""
    where = ("every layer" if len(layers) == cfg.n_layers
             else "alternate layers" if layers in (list(range(0, cfg.n_layers, 2)), list(range(1, cfg.n_layers, 2)))
             else f"layer{'s' * (len(layers) > 1)} {', '.join(map(str, layers))}" if len(layers) <= 4
             else f"{len(layers)} of {cfg.n_layers} layers")
    return f"window {cfg.window(layers[0])} on {where}"


def _labels(cfg: ModelConfig) -> dict[str, str]:
    norm = "LayerNorm" if cfg.norm == "layernorm" else "RMSNorm"
    heads = (f"{cfg.n_heads} heads" if cfg.n_kv_heads == cfg.n_heads
             else f"{cfg.n_heads} q heads / {cfg.n_kv_heads} kv heads")
    extras = []
    if cfg.positions != "learned":
        extras.append("RoPE" if cfg.positions == "rope" else f"YaRN x{cfg.rope_scaling_factor:g}")
    window = _window_label(cfg)
    if window:
        extras.append(window)
    if cfg.sinks:
        extras.append("sinks")
    mlp = {"gelu": "GELU MLP", "swiglu": "SwiGLU MLP", "gptoss_swiglu": "clamped SwiGLU"}[cfg.mlp]
    if cfg.is_moe:
        mlp = f"router: top-{cfg.experts_per_token} of {cfg.n_experts} experts ({mlp})"
    return {
        "embedding": f"token embedding ({cfg.vocab_size:,} x {cfg.d_model})",
        "positions": "+ learned positions" if cfg.positions == "learned" else "positions: rotary, inside attention",
        "attn_norm": norm,
        "attention": f"causal attention, {heads}" + (f"\n{', '.join(extras)}" if extras else ""),
        "mlp_norm": norm,
        "mlp": mlp,
        "final_norm": f"final {norm}",
        "unembedding": "unembedding" + (" (tied to the embedding)" if cfg.tie_embeddings else " (its own weights)"),
    }


def draw_block(cfg: ModelConfig, highlight: str | tuple[str, ...] = (), title: str | None = None,
               fig: Figure | None = None, notes: Mapping[str, str] | None = None,
               focus: str | tuple[str, ...] = ()) -> Figure:
    """Draw the model a config describes, bottom to top, marking the parts in ``highlight`` (changed).

    ``focus`` marks parts a notebook works on without changing what they compute, in another colour,
    with a key. ``notes`` adds a line to a part's box: what of it the step changes, when that is not
    all of it (notebook 08 stores the experts in MXFP4, not the router beside them).
    """
    marked = {highlight} if isinstance(highlight, str) else set(highlight)
    looked_at = {focus} if isinstance(focus, str) else set(focus)
    notes = dict(notes or {})
    unknown = (marked | looked_at | set(notes)) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown part(s) {sorted(unknown)}; parts are {', '.join(PARTS)}")
    if marked & looked_at:
        raise ValueError(f"part(s) {sorted(marked & looked_at)} are both changed (highlight) and only looked at "
                         "(focus): name each in one of them")
    fig = fig or Figure(figsize=(6.2, 6.0))
    ax = fig.add_subplot()
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.6 if looked_at else 0, 10.6)  # room for the key under the embedding
    ax.axis("off")
    labels = _labels(cfg)
    for part, note in notes.items():
        labels[part] += f"\n{note}"
    order = ["embedding", "positions", "attn_norm", "attention", "mlp_norm", "mlp", "final_norm", "unembedding"]
    ys = [0.4, 1.5, 2.9, 4.0, 5.5, 6.6, 8.4, 9.5]
    for part, y in zip(order, ys):
        h = 0.95 if part in ("attention", "mlp") else 0.7
        colour = HIGHLIGHT if part in marked else FOCUS if part in looked_at else PLAIN
        ax.add_patch(FancyBboxPatch((1.4, y), 7.2, h, boxstyle="round,pad=0.05", fc=colour, ec="#345", lw=1.2))
        ax.text(5.0, y + h / 2, labels[part], ha="center", va="center", fontsize=8.5,
                fontweight="bold" if part in marked | looked_at else "normal")
    # The repeated block and its two residual connections.
    ax.add_patch(FancyBboxPatch((0.9, 2.7), 8.2, 5.2, boxstyle="round,pad=0.1", fc="none", ec="#888", ls="--"))
    ax.text(9.3, 5.3, f"x {cfg.n_layers}", fontsize=10, va="center")
    for y0, y1 in ((2.75, 5.2), (5.35, 7.75)):
        ax.annotate("", xy=(1.0, y1), xytext=(1.0, y0), arrowprops=dict(arrowstyle="->", color="#555"))
        ax.text(0.45, (y0 + y1) / 2, "+x", fontsize=8, color="#555", rotation=90, va="center")
    total = cfg.param_counts()["total"]
    size = f"{total / 1e9:.1f} B" if total >= 1e9 else f"{total / 1e6:,.1f} M"
    ax.set_title(title or f"{cfg.name}: {size} parameters", fontsize=10)
    if looked_at:
        key = [Patch(fc=FOCUS, ec="#345", label="worked on here, computing the same")]
        if marked:
            key.insert(0, Patch(fc=HIGHLIGHT, ec="#345", label="changed here"))
        ax.legend(handles=key, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=len(key), fontsize=8,
                  frameon=False)
    return fig
