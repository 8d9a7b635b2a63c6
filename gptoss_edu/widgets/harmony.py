"""Notebook 11's views: tokens coloured by where BPE cut the text, or by their part in a harmony message.

:class:`TokenView` shows a list of token ids as coloured chips in a notebook; its plain text (what
nbval compares) joins the pieces with ``|``. :func:`harmony_explorer` renders a small conversation
as the learner changes the reasoning effort, the developer instructions and the user's message:
a bar per message counts its tokens by kind, and below it every token is shown coloured.
"""

from __future__ import annotations

import html
from typing import Sequence

import ipywidgets as widgets
import tiktoken
from matplotlib.figure import Figure

from .. import harmony
from ..tokenizer import get_encoding
from . import Explorer, check_choice

KINDS = ("special", "header", "content", "text")
KIND_COLOURS = {
    "special": "#ffb347",  # control tokens: <|start|>, <|channel|>, <|message|>, <|end|>, ...
    "header": "#9fc5e8",   # the role, the recipient and the channel name
    "content": "#d9ead3",  # what the message says
    "text": "#eeeeee",     # anything outside a message (plain text)
}
KIND_LABELS = {
    "special": "control token",
    "header": "header: role, recipient, channel",
    "content": "content",
    "text": "outside any message",
}
# Two alternating shades make the cut between neighbouring BPE tokens visible.
SPLIT_COLOURS = ("#cfe2f3", "#fce5cd")
ENDS = (harmony.END, harmony.RETURN, harmony.CALL)


def _encoding(enc: tiktoken.Encoding | None) -> tiktoken.Encoding:
    return get_encoding("o200k_harmony") if enc is None else enc


def token_texts(ids: Sequence[int], enc: tiktoken.Encoding | None = None) -> list[str]:
    """The text of each token; bytes that are not UTF-8 on their own (part of a character) as \\xNN."""
    enc = _encoding(enc)
    out = []
    for t in ids:
        raw = enc.decode_single_token_bytes(t)
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError:  # BPE cut a multi-byte character: show its bytes
            out.append("".join(f"\\x{b:02x}" for b in raw))
    return out


def token_kinds(ids: Sequence[int], enc: tiktoken.Encoding | None = None, in_header: bool = False) -> list[str]:
    """Each token's part in the harmony format: special, header, content, or text (outside a message).

    ``in_header=True`` for what a model writes after a prompt ending in ``<|start|>assistant``:
    its first tokens still belong to the message header.
    """
    enc = _encoding(enc)
    specials = {enc.encode_single_token(t) for t in enc.special_tokens_set}
    if harmony.START not in enc.special_tokens_set:  # GPT-2's or o200k_base's tokens: no messages, only text
        return ["special" if t in specials else "text" for t in ids]
    start, message = enc.encode_single_token(harmony.START), enc.encode_single_token(harmony.MESSAGE)
    ends = {enc.encode_single_token(t) for t in ENDS}
    state = "header" if in_header else "text"
    kinds = []
    for t in ids:
        if t in specials:
            kinds.append("special")
            if t == start:
                state = "header"
            elif t == message:
                state = "content"
            elif t in ends:
                state = "text"
        else:
            kinds.append(state)
    return kinds


def _chip(text: str, colour: str, tip: str) -> str:
    shown = html.escape(text).replace("\n", "↵").replace("\t", "→")
    # A chip never breaks inside; the line breaks after a token that holds a newline.
    # Dark text of its own: on the pale chips a dark theme's white text would all but vanish.
    return (f"<span title='{html.escape(tip)}' style='display:inline-block;white-space:pre;color:#1a1a1a;background:{colour};"
            f"padding:0 2px;margin:1px;border-radius:3px'>{shown}</span>" + "<br>" * text.count("\n"))


def tokens_html(ids: Sequence[int], enc: tiktoken.Encoding | None = None, mode: str = "kinds",
                in_header: bool = False, legend: bool = True) -> str:
    """The tokens as coloured chips: by harmony part (mode "kinds") or alternating (mode "splits")."""
    if mode not in ("kinds", "splits"):
        raise ValueError(f"mode must be 'kinds' or 'splits', got {mode!r}")
    enc = _encoding(enc)
    texts = token_texts(ids, enc)
    if mode == "splits":
        colours = [SPLIT_COLOURS[i % 2] for i in range(len(ids))]
        used: list[str] = []
    else:
        kinds = token_kinds(ids, enc, in_header)
        colours = [KIND_COLOURS[k] for k in kinds]
        used = [k for k in KINDS if k in kinds]
    tips = [f"id {t}" for t in ids] if mode == "splits" else [f"id {t}: {KIND_LABELS[k]}" for t, k in zip(ids, kinds)]
    chips = "".join(_chip(s, c, tip) for s, c, tip in zip(texts, colours, tips))
    body = f"<div style='font-family:monospace;font-size:12.5px;line-height:1.6'>{chips}</div>"
    if legend and used:
        keys = " ".join(_chip(KIND_LABELS[k], KIND_COLOURS[k], k) for k in used)
        body += f"<div style='font-size:11px;margin-top:4px'>{len(ids)} tokens &nbsp; {keys}</div>"
    return body


class TokenView:
    """Token ids shown coloured in a notebook; as plain text, the pieces joined by ``|``."""

    def __init__(self, ids: Sequence[int], enc: tiktoken.Encoding | None = None, mode: str = "kinds",
                 in_header: bool = False, max_plain: int = 40) -> None:
        self.ids, self.enc, self.mode, self.in_header, self.max_plain = list(ids), _encoding(enc), mode, in_header, max_plain

    def _repr_html_(self) -> str:
        return tokens_html(self.ids, self.enc, self.mode, self.in_header)

    def __repr__(self) -> str:
        texts = token_texts(self.ids, self.enc)
        shown = "|".join(texts[: self.max_plain]).replace("\n", "↵")
        more = f"|… (+{len(texts) - self.max_plain})" if len(texts) > self.max_plain else ""
        return f"{len(texts)} tokens: {shown}{more}"


def conversation(effort: str, instructions: str, message: str) -> list[harmony.Message]:
    """The explorer's conversation: a system message, a developer message if any instructions, the user."""
    messages = [harmony.system(effort)]
    if instructions.strip():
        messages.append(harmony.developer(instructions))
    return messages + [harmony.user(message)]


class HarmonyExplorer(Explorer):
    """An Explorer whose figure counts each message's tokens by kind, with the coloured tokens below."""

    def __init__(self, effort: str = "medium", instructions: str = "", message: str = "Hello!") -> None:
        self.enc = get_encoding("o200k_harmony")
        self.ids: list[int] = []
        self.stats: dict[str, int] = {}
        self.tokens = widgets.HTML()  # filled by redraw, which Explorer's constructor calls
        check_choice("effort", effort, harmony.REASONING_EFFORTS)
        controls = {
            "effort": widgets.ToggleButtons(options=harmony.REASONING_EFFORTS, value=effort,
                                            description="reasoning"),
            "instructions": widgets.Text(value=instructions, description="developer",
                                         placeholder="instructions (empty: no developer message)",
                                         layout=widgets.Layout(width="440px")),
            "message": widgets.Text(value=message, description="user", layout=widgets.Layout(width="440px")),
        }
        super().__init__("Harmony explorer: the prompt gpt-oss reads, token by token", self._draw, controls,
                         figsize=(7.0, 2.4))
        self.children = (*self.children, self.tokens)

    def _draw(self, fig: Figure, effort: str, instructions: str, message: str) -> None:
        messages = conversation(effort, instructions, message)
        parts = [(m.role, harmony.render_message(m, encoding=self.enc)) for m in messages]
        parts.append(("reply starts", harmony.render_conversation([], encoding=self.enc)))  # <|start|>assistant
        self.ids = [t for _, ids in parts for t in ids]
        kinds = token_kinds(self.ids, self.enc)
        self.stats = {"tokens": len(self.ids), **{k: kinds.count(k) for k in KINDS[:3]}}

        ax = fig.add_subplot()
        left = [0] * len(parts)
        for kind in KINDS[:3]:
            counts = [token_kinds(ids, self.enc).count(kind) for _, ids in parts]
            ax.barh(range(len(parts)), counts, left=left, color=KIND_COLOURS[kind], edgecolor="#555",
                    linewidth=0.5, label=KIND_LABELS[kind])
            left = [a + b for a, b in zip(left, counts)]
        for y, total in enumerate(left):
            ax.text(total, y, f" {total}", va="center", fontsize=8)
        ax.set_yticks(range(len(parts)), [name for name, _ in parts], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, max(left) * 1.15)
        ax.set_xlabel("tokens", fontsize=8)
        ax.set_title(f"Reasoning: {effort}  ·  {len(self.ids)} tokens in all", fontsize=9)
        # Below the bars, never on one: a long message runs its bar to the right edge.
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3)

    def redraw(self) -> None:
        """Render the conversation for the current values: the figure, then the coloured tokens."""
        self.tokens.value = ""  # not the last prompt's tokens under a picture that failed to draw
        super().redraw()
        self.tokens.value = tokens_html(self.ids, self.enc)

    def __repr__(self) -> str:  # nbval compares this text
        return f"HarmonyExplorer(effort={self.values['effort']!r}; {self.stats['tokens']} tokens)"


def harmony_explorer(effort: str = "medium", instructions: str = "", message: str = "Hello!") -> HarmonyExplorer:
    """Pick the reasoning effort, type instructions and a message, and see the rendered prompt's tokens."""
    return HarmonyExplorer(effort, instructions, message)
