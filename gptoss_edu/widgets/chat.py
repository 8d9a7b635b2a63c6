"""Notebook 12's chat widget: message box, reasoning effort, Send; thinking and answer apart.

:func:`reply` runs one assistant turn in the harmony format (system message at the chosen
reasoning effort, the conversation so far, then ``<|start|>assistant``), streams the tokens
through :class:`gptoss_edu.harmony.ReplyReader` and keeps each channel's text apart.
:class:`ChatWidget` puts a text box, the effort dropdown and Send around it; its ``send(text)``
does what the button does, so tests and scripted tours drive it without a browser.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import ipywidgets as widgets
import tiktoken
import torch

from .. import harmony
from ..generate import Generation, check_chat_settings, release_memory, stream, turn_seed
from ..memory import is_out_of_memory
from ..model import GPT
from ..static_decode import fast_step
from ..tokenizer import get_encoding
from . import ERROR_STYLE, close_with_children
from .memory import memory_explorer  # noqa: F401  its home until 2026-12-01: a learner's older notebook 12 imports it here

EFFORTS = harmony.REASONING_EFFORTS
# A Send clicked twice queues the second click behind the first reply; when Stop ends that reply, the
# queued click runs at once. A click this soon after a stop is that one, not a new request.
QUEUED_CLICK_SECONDS = 0.5
OnText = Callable[[str, str], None]  # (channel, new text)


@dataclass
class Reply:
    """One assistant turn: the text of each channel, the completed messages, and the timings."""

    effort: str
    channels: dict[str, str] = field(default_factory=dict)  # channel -> text, in order of appearance
    channel_tokens: dict[str, int] = field(default_factory=dict)  # channel -> tokens of its text
    messages: list[harmony.Message] = field(default_factory=list)  # to keep in the conversation
    stats: Generation = field(default_factory=Generation)
    problem: str | None = None  # set when the tokens do not follow the harmony format
    raw: str = ""  # the decoded tokens, for when they do not
    tool_calls: list[str] = field(default_factory=list)  # whom the model called (this chat has no tools)
    still_thinking: bool = False  # it stopped inside its thinking, with no answer

    @property
    def analysis(self) -> str:
        """The model's thinking (the analysis channel), empty when it wrote none."""
        return self.channels.get("analysis", "")

    @property
    def answered(self) -> bool:
        """Whether it holds an answer to keep (the final channel, or none), complete or cut short."""
        return any(harmony.is_answer(m.channel, m.recipient) for m in self.messages)

    @property
    def final(self) -> str:
        """The answer (the final channel), empty when it wrote none."""
        return self.channels.get("final", "")

    @property
    def prefill_tokens_per_second(self) -> float:
        """Prompt tokens read per second (the prefill, which also picks the first new token)."""
        s = self.stats
        return s.prompt_tokens / s.prefill_seconds if s.prefill_seconds else 0.0


def conversation_ids(messages: Sequence[harmony.Message], effort: str, date: str | None = None,
                     encoding: tiktoken.Encoding | None = None) -> list[int]:
    """The prompt for the next assistant turn: system message at ``effort``, ``messages``, ``<|start|>assistant``."""
    return harmony.render_conversation([harmony.system(effort, date=date), *messages], encoding=encoding)


def reply(model: GPT, messages: Sequence[harmony.Message], effort: str = "medium", *, max_new_tokens: int = 256,
          temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None, date: str | None = None,
          on_text: OnText | None = None, encoding: tiktoken.Encoding | None = None,
          cuda_graph: bool | None = None) -> Reply:
    """Generate the assistant's next turn after ``messages``, calling ``on_text(channel, text)`` as text arrives."""
    # cuda_graph=None: on a GPU each decode step replays a CUDA graph (static_decode.fast_step).
    if effort not in EFFORTS:
        raise ValueError(f"reasoning effort must be one of {', '.join(EFFORTS)}, got {effort!r}")
    enc = encoding if encoding is not None else get_encoding("o200k_harmony")
    prompt = conversation_ids(messages, effort, date, enc)
    context = model.config.context_length
    if len(prompt) >= context:
        # With the message alone over the context, a new chat would not help.
        n = len(prompt) if len(messages) <= 1 else len(conversation_ids(messages[-1:], effort, date, enc))
        alone = n >= context
        what = f"this message (with the system message) is {n}" if alone else f"the conversation is {len(prompt)}"
        advice = "shorten it" if alone else "shorten the message, or start a New chat"
        raise ValueError(f"{what} tokens, over this model's context of {context}: {advice}")
    out = Reply(effort)
    reader = harmony.ReplyReader(enc)
    tokens = stream(model, prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
                    stop_tokens=reader.stop_tokens, stats=out.stats, decoder=fast_step(cuda_graph))
    try:
        for piece in reader.read(tokens):
            # A message with no channel is an answer too (it is kept as one); one to a recipient is a tool
            # call, never the answer.
            channel = piece.channel or "final"
            if piece.recipient is not None:
                channel = f"{channel} to {piece.recipient}"
            if not piece.opens:  # a token of the text (not the <|message|> that opened it)
                out.channel_tokens[channel] = out.channel_tokens.get(channel, 0) + 1
            elif out.channels.get(channel):  # a second message on the same channel: a paragraph of its own
                out.channels[channel] += "\n\n"
                if on_text is not None:
                    on_text(channel, "\n\n")
            if piece.text:
                out.channels[channel] = out.channels.get(channel, "") + piece.text
                if on_text is not None:
                    on_text(channel, piece.text)
    finally:
        tokens.close()
    out.stats.stop_reason = reader.stop_reason(out.stats.stop_reason)
    out.messages = reader.messages()
    out.tool_calls = reader.tool_calls()
    out.still_thinking = reader.still_thinking()
    # A header the token budget or a full context cut off was no fault of the model's (as in the terminal chat).
    out.problem = reader.format_problem(cut_short=out.stats.cut_short)
    out.raw = enc.decode(out.stats.tokens)
    return out


def _box(text: str, colour: str, label: str) -> str:
    body = html.escape(text, quote=False) if text else "<i>(nothing)</i>"
    return (f"<div style='border-left:3px solid {colour};padding:2px 8px;margin:2px 0'>"
            f"<small style='color:{colour}'>{label}</small>"
            f"<div style='white-space:pre-wrap'>{body}</div></div>")


class ChatWidget(widgets.VBox):
    """Type a message, pick the reasoning effort, Send: the thinking and the answer stream in apart."""

    def __init__(self, model: GPT, effort: str = "medium", *, max_new_tokens: int = 256, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int | None = None, date: str | None = None) -> None:
        if effort not in EFFORTS:
            raise ValueError(f"reasoning effort must be one of {', '.join(EFFORTS)}, got {effort!r}")
        seed = check_chat_settings(max_new_tokens, temperature, top_p, seed)  # not at each Send, in the status line
        self.model: GPT | None = model
        self.date = date
        self.max_new_tokens, self.temperature, self.top_p, self.seed = max_new_tokens, temperature, top_p, seed
        self.encoding = get_encoding("o200k_harmony")
        self.messages: list[harmony.Message] = []
        self.replies: list[Reply] = []
        self.text = widgets.Textarea(placeholder="Your message", layout=widgets.Layout(width="60%", height="3.2em"))
        self.effort = widgets.Dropdown(options=list(EFFORTS), value=effort, description="reasoning",
                                       layout=widgets.Layout(width="190px"))
        self.send_button = widgets.Button(description="Send", button_style="primary")
        self.reset_button = widgets.Button(description="New chat")
        self.history = widgets.HTML()
        self.thinking = widgets.HTML()
        self.answer = widgets.HTML()
        self.status = widgets.HTML()
        self._stopped_at: float | None = None  # when Stop last ended a reply (time.monotonic)
        self.send_button.on_click(lambda _b: self._clicked())
        self.reset_button.on_click(lambda _b: self.reset())
        controls = widgets.HBox([self.text, self.effort, self.send_button, self.reset_button])
        super().__init__([controls, self.history, self.thinking, self.answer, self.status])
        self._show("", "")

    # ---- what the learner does ------------------------------------------------------------
    def _clicked(self) -> Reply | None:
        """Send, unless this click was queued behind the reply Stop just ended: Stop means stop."""
        stopped, self._stopped_at = self._stopped_at, None
        if stopped is not None and time.monotonic() - stopped < QUEUED_CLICK_SECONDS:
            return None
        return self.send()

    def send(self, text: str | None = None) -> Reply | None:
        """Send ``text`` (default: the box's content) as the user, stream the reply, keep both."""
        if self.model is None:
            raise RuntimeError("this chat widget was closed, and has let go of its model: make a new ChatWidget")
        text = self.text.value if text is None else text
        if not text.strip():
            # A second click queued behind a reply finds the box emptied: keep that reply's summary in view.
            last = html.escape(self._summary(self.replies[-1]), quote=False) + "<br>" if self.replies else ""
            self.status.value = f"{last}<i>Type a message first.</i>"
            return None
        # The message joins the conversation only with its reply: a failed or interrupted turn leaves no trace.
        pending = [*self.messages, harmony.user(text)]
        # A conversation that would leave the reply less than max_new_tokens (at most half the context) loses
        # its oldest turns: the model no longer sees them (the history above still shows them).
        effort = self.effort.value
        fit = harmony.make_room(pending, lambda kept: conversation_ids(kept, effort, self.date, self.encoding),
                                self.model.config.context_length, self.max_new_tokens)
        pending = fit.kept
        self.send_button.disabled = True
        self.status.value = f"<i>generating (reasoning: {self.effort.value}) ...</i>"
        self._show("", "")
        live: dict[str, str] = {}

        def on_text(channel: str, delta: str) -> None:
            live[channel] = live.get(channel, "") + delta
            self._show(live.get("analysis", ""), live.get("final", ""))

        out_of_memory = False
        try:
            out = reply(self.model, pending, self.effort.value, max_new_tokens=self.max_new_tokens,
                        temperature=self.temperature, top_p=self.top_p, date=self.date, on_text=on_text,
                        seed=turn_seed(self.seed, len(self.replies)), encoding=self.encoding)
        except ValueError as e:  # the conversation no longer fits the context
            self._show_last()
            self.status.value = f"<span style='{ERROR_STYLE}'>{html.escape(str(e), quote=False)}</span>"
            return None
        except BaseException as e:
            # Out of memory: the prompt grows every turn, and the cache with it. The memory is given back
            # below, once this clause has let go of the error, whose traceback holds the failed reply's cache.
            out_of_memory = is_out_of_memory(e)
            if not out_of_memory:  # the stop button (KeyboardInterrupt), or a bug: said here, then raised
                why = "interrupted" if isinstance(e, KeyboardInterrupt) else f"failed ({type(e).__name__}: {e})"
                self._show_last()  # not the reply that is dropped
                # A widget's error goes to JupyterLab's log, not under the cell: say where its traceback is.
                where = "" if isinstance(e, KeyboardInterrupt) else " (its traceback: View, Show Log Console)"
                self.status.value = (f"<span style='{ERROR_STYLE}'>{html.escape(why, quote=False)}: this message is "
                                     f"dropped, the conversation is as before it{where}.</span>")
                if isinstance(e, KeyboardInterrupt):
                    self._stopped_at = time.monotonic()
                raise
        finally:
            self.send_button.disabled = False
        if out_of_memory:
            release_memory()
            self._show_last()
            self.status.value = (f"<span style='{ERROR_STYLE}'>out of memory with the conversation so far: this message "
                                 "is dropped. Send a shorter one, lower max_new_tokens, or start a New chat.</span>")
            return None
        if not out.answered and out.stats.stop_reason in ("max_new_tokens", "context_full"):
            # No answer when the budget or the context ran out (still thinking, a tool call or babble cut short): a
            # user turn left unanswered would put two user messages in a row. Dropped as a failed turn is: the
            # conversation and the box as they were.
            self._show(out.analysis, "")
            why = "still thinking" if out.still_thinking else "no answer"
            if out.stats.stop_reason == "context_full":
                advice = (f"{why} when the context window filled, after {len(out.stats.tokens)} tokens: this message "
                          "is dropped. Start a New chat, or lower the reasoning effort, then Send it again.")
            else:
                advice = (f"{why} after {self.max_new_tokens} tokens: this message is dropped. Raise max_new_tokens "
                          "or lower the reasoning effort, then Send it again.")
            self.status.value = (f"{html.escape(self._summary(out), quote=False)}<br><span style='{ERROR_STYLE}'>"
                                 f"{advice}</span>")
            return None
        self.messages = [*pending, *out.messages]
        self.replies.append(out)
        self.text.value = ""
        self._show(out.analysis, out.final)
        self._record(text, out)
        left_out = fit.left_out
        note = (f"; the {'oldest turn' if left_out == 1 else f'{left_out} oldest turns'} of the conversation "
                "left out to leave room for the reply" if left_out else "")
        if fit.short:  # even after leaving out every earlier turn, or with none to leave out
            note += f"{' (even so, ' if left_out else '; '}room for only {fit.room} tokens{')' if left_out else ''}"
        self.status.value = html.escape(self._summary(out) + note, quote=False)
        return out

    def close(self) -> None:
        """Close the widget and its controls, and let go of the model (a widget lives as long as the kernel)."""
        for child in self.children:
            close_with_children(child)
        self.model = None
        super().close()

    def reset(self) -> None:
        """Start a new conversation."""
        self.messages, self.replies = [], []
        self.history.value = ""
        self._show("", "")
        self.status.value = "<i>new chat</i>"

    # ---- showing ------------------------------------------------------------------------------
    def _show_last(self) -> None:
        """The last kept reply in the boxes again (nothing before the first), after a message that was dropped."""
        last = self.replies[-1] if self.replies else None
        self._show(last.analysis if last else "", last.final if last else "")

    def _show(self, analysis: str, final: str) -> None:
        self.thinking.value = _box(analysis, "#666", "thinking (analysis channel)")
        self.answer.value = _box(final, "#1f77b4", "answer (final channel)")

    def _record(self, text: str, out: Reply) -> None:
        turn = (f"<div><b>you</b> ({out.effort}): {html.escape(text, quote=False)}</div>"
                f"<div><b>model</b>: {html.escape(out.final, quote=False) or '<i>(no final answer)</i>'}</div>")
        self.history.value += turn

    @staticmethod
    def _summary(out: Reply) -> str:
        s = out.stats
        notes = [f"{len(s.tokens)} new tokens, {s.tokens_per_second:.1f} tokens/s",
                 f"prompt {s.prompt_tokens} tokens at {out.prefill_tokens_per_second:.0f} tokens/s",
                 f"stopped: {s.stop_reason}"]
        if out.tool_calls:
            notes.append(f"the model called {', '.join(out.tool_calls)}, but this chat has no tools")
        if out.problem:
            notes.append(f"not harmony ({out.problem}); raw text: {out.raw!r}")
        return "; ".join(notes)

    def __repr__(self) -> str:  # nbval compares this text: no HTML, no timings
        if self.model is None:
            return "ChatWidget(closed)"
        return (f"ChatWidget({self.model.config.name}; controls: message, reasoning effort "
                f"({'/'.join(EFFORTS)}), Send, New chat)")
