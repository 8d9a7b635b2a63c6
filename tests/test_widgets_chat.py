"""Notebook 12's chat widget, driven without a browser: a scripted model, then the shipped tiny checkpoint."""

from __future__ import annotations

import html
import weakref
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import gptoss_edu as g
from gptoss_edu import harmony
from gptoss_edu.tokenizer import get_encoding
import gptoss_edu.widgets.chat as chat_widget_module
from gptoss_edu.widgets.chat import ChatWidget, conversation_ids, reply
from simulated import OUT_OF_MEMORY, OUT_OF_MEMORY_IDS

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny-gpt-oss"
ENC = get_encoding("o200k_harmony")


def harmony_tokens(text: str) -> list[int]:
    return ENC.encode(text, allowed_special="all")


class Scripted(nn.Module):
    """Stands in for GPT in generate.stream: writes a fixed token script and records each prompt."""

    def __init__(self, script: str, context: int = 4096) -> None:
        super().__init__()
        self.script = harmony_tokens(script)
        self.config = SimpleNamespace(context_length=context, name="scripted", vocab_size=ENC.n_vocab, dropout=0.0)
        self.embed = nn.Embedding(1, 1)
        self.prompts: list[list[int]] = []

    def new_cache(self, batch_size: int, max_len: int) -> SimpleNamespace:
        return SimpleNamespace(length=0)

    def forward(self, ids: torch.Tensor, cache: SimpleNamespace, last_only: bool = False) -> torch.Tensor:
        if cache.length == 0:  # a new generation: the prompt, then one token a call
            self.prompts.append(ids[0].tolist())
            self.position = 0
        cache.length += ids.shape[1]
        logits = torch.full((1, ids.shape[1], ENC.n_vocab), -1e4)
        logits[0, -1, self.script[min(self.position, len(self.script) - 1)]] = 0.0
        self.position += 1
        return logits


THINK_THEN_ANSWER = ("<|channel|>analysis<|message|>The user greets me. Reply briefly.<|end|>"
                     "<|start|>assistant<|channel|>final<|message|>Hello there!<|return|>")


def test_reply_keeps_the_channels_apart_and_streams_them():
    model = Scripted(THINK_THEN_ANSWER)
    seen = []
    out = reply(model, [harmony.user("Hi")], "high", temperature=0.0,
                on_text=lambda channel, text: seen.append((channel, text)))
    assert out.analysis == "The user greets me. Reply briefly." and out.final == "Hello there!"
    assert list(out.channels) == ["analysis", "final"] and out.problem is None
    assert out.stats.stop_reason == "stop_token" and out.stats.prompt_tokens == len(model.prompts[0])
    assert "".join(t for c, t in seen if c == "analysis") == out.analysis and len(seen) > 2
    assert [m.channel for m in out.messages] == ["analysis", "final"]
    assert out.channel_tokens == {"analysis": len(ENC.encode(out.analysis)), "final": len(ENC.encode(out.final))}


def test_the_effort_goes_into_the_system_message():
    for effort in ("low", "medium", "high"):
        model = Scripted(THINK_THEN_ANSWER)
        reply(model, [harmony.user("Hi")], effort, temperature=0.0)
        prompt = ENC.decode(model.prompts[0])
        assert f"Reasoning: {effort}" in prompt and prompt.endswith("<|start|>assistant")
        assert model.prompts[0] == conversation_ids([harmony.user("Hi")], effort)
    with pytest.raises(ValueError, match="reasoning effort"):
        reply(Scripted(THINK_THEN_ANSWER), [harmony.user("Hi")], "maximal")


def test_widget_send_shows_thinking_and_answer_in_their_own_boxes():
    model = Scripted(THINK_THEN_ANSWER)
    w = ChatWidget(model, effort="low", temperature=0.0)
    w.text.value = "Hi"
    w.send_button.click()  # what the learner does
    assert "The user greets me" in w.thinking.value and "Hello there!" not in w.thinking.value
    assert "Hello there!" in w.answer.value and "greets" not in w.answer.value
    assert "stop_token" in w.status.value and w.text.value == "" and not w.send_button.disabled
    assert "Hi" in w.history.value and "Hello there!" in w.history.value
    assert "Reasoning: low" in ENC.decode(model.prompts[0])
    assert "<" not in repr(w) and "reasoning effort" in repr(w)


def test_dropdown_changes_the_effort_and_the_conversation_drops_old_thinking():
    model = Scripted(THINK_THEN_ANSWER)
    w = ChatWidget(model, temperature=0.0)
    w.send("Hi")
    w.effort.value = "high"
    w.send("And again?")
    second = ENC.decode(model.prompts[1])
    assert "Reasoning: high" in second and "Hello there!" in second and "And again?" in second
    assert "The user greets me" not in second  # a finished turn's analysis is not shown to the model again
    assert [r.effort for r in w.replies] == ["medium", "high"]
    w.reset_button.click()
    assert w.messages == [] and w.history.value == ""
    w.send("Fresh start")
    assert "Hello there!" not in ENC.decode(model.prompts[2])


def test_empty_message_and_full_context_are_reported_not_raised():
    model = Scripted(THINK_THEN_ANSWER, context=30)
    w = ChatWidget(model)
    assert w.send("   ") is None and "Type a message" in w.status.value and model.prompts == []
    assert w.send("Hi") is None and "over this model's context" in w.status.value
    assert "this message (with the system message) is" in w.status.value and "shorten it" in w.status.value
    assert "New chat" not in w.status.value  # the chat is new already: only a shorter message helps
    assert w.messages == [] and not w.send_button.disabled


def test_a_message_that_overflows_a_conversation_leaves_the_oldest_turns_out():
    """It was refused ("start a New chat"); the fewest oldest turns now go, and the status says so."""
    n = len(conversation_ids([harmony.user("Hi")], "medium"))
    model = Scripted(ANSWER, context=n + 40)
    w = ChatWidget(model, temperature=0.0, max_new_tokens=10)
    assert w.send("Hi") is not None and w.send("Hi") is not None
    assert "left out" not in w.status.value
    again = "Hi again " * 14  # 28 tokens more than "Hi": it fits alone, not after the first turns
    alone = conversation_ids([harmony.user(again)], "medium")
    assert len(alone) + 10 <= n + 40 < len(conversation_ids([*w.messages, harmony.user(again)], "medium"))
    assert w.send(again) is not None
    assert model.prompts[-1] == alone  # both earlier turns left out: with either, no room for 10 tokens
    assert "the 2 oldest turns of the conversation left out to leave room for the reply" in w.status.value
    assert [m.content for m in w.messages if m.role == "user"] == [again]
    assert w.history.value.count("<b>you</b>") == 3  # the history still shows every turn
    assert "room for only" not in w.status.value
    w.max_new_tokens = n + 40  # more than the context: half of it is asked for, which the message alone leaves not
    assert w.send(again) is not None
    room = n + 40 - len(alone)
    assert room < (n + 40) // 2 and f"left out to leave room for the reply (even so, room for only {room} tokens)" \
        in w.status.value


def test_the_fewest_turns_are_left_out_and_a_failed_turn_keeps_them():
    n = len(conversation_ids([harmony.user("one")], "medium"))
    model = Scripted(ANSWER, context=4096)
    w = ChatWidget(model, temperature=0.0, max_new_tokens=20)
    for word in ("one", "two", "three"):
        w.send(word)
    full = len(conversation_ids([*w.messages, harmony.user("four")], "medium"))
    model.config.context_length = full + 19  # one token short of the reply's room
    model.script = harmony_tokens("<|channel|>analysis<|message|>hm")  # still thinking at the end: a failed turn
    before = list(w.messages)
    assert w.send("four") is None  # still thinking / no answer at max_new_tokens: dropped
    assert w.messages == before  # the turn left out for it is back
    model.script = harmony_tokens(ANSWER)
    assert w.send("four") is not None
    assert [m.content for m in w.messages if m.role == "user"] == ["two", "three", "four"]
    assert "the oldest turn of the conversation left out" in w.status.value and n < full


def test_a_message_too_long_on_its_own_is_told_so_and_the_last_answer_stays():
    """After the first turn a message over the context by itself was told to "start a New chat", which cannot
    help; and the refused message blanked the boxes, as if the last answer were lost."""
    n = len(conversation_ids([harmony.user("Hi")], "medium"))
    w = ChatWidget(Scripted(THINK_THEN_ANSWER, context=n + 40), temperature=0.0)
    first = w.send("Hi")
    shown = (w.thinking.value, w.answer.value)
    assert first.final in w.answer.value
    long = "word " * 300
    assert w.send(long) is None
    alone = len(conversation_ids([harmony.user(long)], "medium"))
    assert f"this message (with the system message) is {alone} tokens" in w.status.value, w.status.value
    assert "shorten it" in w.status.value and "New chat" not in w.status.value
    assert (w.thinking.value, w.answer.value) == shown


class RunsOutOfMemory(Scripted):
    """A Scripted model whose GPU runs out of memory once a prompt is longer than ``limit`` tokens."""

    def __init__(self, script: str, limit: int, error: Exception) -> None:
        super().__init__(script)
        self.limit, self.error = limit, error

    def forward(self, ids, cache, last_only=False):
        if cache.length == 0 and ids.shape[1] > self.limit:
            cache.keys = torch.zeros(4)  # the failed reply's KV cache: memory to give back
            self.failed_cache = weakref.ref(cache.keys)
            raise type(self.error)(*self.error.args)  # a new one: a raised error keeps its traceback's frames
        return super().forward(ids, cache, last_only)


@pytest.mark.parametrize("error", OUT_OF_MEMORY, ids=OUT_OF_MEMORY_IDS)
def test_running_out_of_memory_drops_the_message_and_keeps_the_chat(monkeypatch, error):
    freed = []  # for each release_memory(): was the failed reply's cache gone by then (else nothing is freed)?
    monkeypatch.setattr(chat_widget_module, "release_memory",
                        lambda: freed.append(getattr(model, "failed_cache", lambda: None)() is None))
    model = RunsOutOfMemory(THINK_THEN_ANSWER, limit=len(conversation_ids([harmony.user("Hi")], "medium")),
                            error=error)
    w = ChatWidget(model, temperature=0.0)
    first = w.send("Hi")
    assert first is not None and freed == []
    kept = list(w.messages)
    assert w.send("a longer message that no longer fits") is None  # raised nothing to the button's callback
    assert "out of memory" in w.status.value and "New chat" in w.status.value and freed == [True]
    assert w.messages == kept and not w.send_button.disabled  # the conversation as before that message
    assert first.final in w.answer.value  # and the boxes show its last answer
    w.reset_button.click()
    assert w.send("Hi") is not None  # a new chat goes on


class FailsAfter(Scripted):
    """A Scripted model that raises ``error`` at its ``after``-th call of a generation (0: the prompt)."""

    def __init__(self, script: str, error: BaseException, after: int) -> None:
        super().__init__(script)
        self.error, self.after, self.armed = error, after, True

    def forward(self, ids, cache, last_only=False):
        if self.armed and cache.length > 0 and self.position >= self.after:
            raise self.error
        return super().forward(ids, cache, last_only)


@pytest.mark.parametrize("error, said", [(KeyboardInterrupt(), "interrupted"),
                                         (RuntimeError("CUDA error: device-side assert"), "failed (RuntimeError")])
def test_a_stopped_or_failed_reply_leaves_the_conversation_as_it_was(error, said):
    """The stop button mid-reply once left the message without an answer: the next turn sent two user messages."""
    model = FailsAfter(THINK_THEN_ANSWER, error, after=3)
    w = ChatWidget(model, temperature=0.0)
    model.armed = False
    w.send("first")
    kept = list(w.messages)
    model.armed = True
    with pytest.raises(type(error)):  # raised on, so a cell calling send() shows it too
        w.send("second")
    assert w.messages == kept and not w.send_button.disabled
    assert said in w.status.value and "this message is dropped" in w.status.value
    # A failure's traceback goes to JupyterLab's log console, not under the cell: the status says so.
    assert ("Show Log Console" in w.status.value) == (not isinstance(error, KeyboardInterrupt))
    assert "Hello there!" in w.answer.value  # the last kept answer, not the dropped one's beginning
    model.armed = False
    w.send("third")
    prompt = ENC.decode(model.prompts[-1])
    assert "third" in prompt and "second" not in prompt


def test_a_second_click_on_an_emptied_box_keeps_the_replys_summary():
    w = ChatWidget(Scripted(THINK_THEN_ANSWER), temperature=0.0)
    w.text.value = "Hi"
    w.send_button.click()
    w.send_button.click()  # queued behind the first: the box is empty by now
    assert "stop_token" in w.status.value and "Type a message first" in w.status.value
    assert len(w.replies) == 1 and "Hello there!" in w.answer.value


def test_text_that_is_not_harmony_is_shown_raw():
    model = Scripted("just words, no header<|return|>")
    out = reply(model, [harmony.user("Hi")], temperature=0.0, max_new_tokens=20)
    assert out.final == "" and out.problem is not None and "just words" in out.raw
    w = ChatWidget(model, temperature=0.0)
    w.send("Hi")
    assert "not harmony" in w.status.value and "(nothing)" in w.answer.value


def test_a_header_cut_by_the_token_budget_or_a_full_context_is_not_blamed_on_the_model():
    for header in ("<|channel|>", "<|channel|>final", " to=functions.get_weather<|channel|>commentary"):
        n = len(harmony_tokens(header))
        out = reply(Scripted(header + "<|message|>Hello!<|return|>"), [harmony.user("Hi")], temperature=0.0,
                    max_new_tokens=n)
        assert out.stats.stop_reason == "max_new_tokens" and out.problem is None, (header, out.problem)
        room = len(conversation_ids([harmony.user("Hi")], "medium", encoding=ENC)) + n
        out = reply(Scripted(header + "<|message|>Hello!<|return|>", context=room), [harmony.user("Hi")],
                    temperature=0.0)
        assert out.stats.stop_reason == "context_full" and out.problem is None, (header, out.problem)
    # Words that cannot begin a header are the model's own doing, cut short or not.
    out = reply(Scripted("random words go on and on"), [harmony.user("Hi")], temperature=0.0, max_new_tokens=3)
    assert out.stats.stop_reason == "max_new_tokens" and out.problem == "no complete message header"
    w = ChatWidget(Scripted("<|channel|>final<|message|>Hello!<|return|>"), temperature=0.0, max_new_tokens=2)
    w.send("Hi")
    assert "max_new_tokens" in w.status.value and "not harmony" not in w.status.value


def test_the_tiny_checkpoint_answers_on_the_final_channel():
    model = g.load_model(TINY, keep_mxfp4=True)
    w = ChatWidget(model, effort="low", temperature=0.0, max_new_tokens=60)
    out = w.send("Who is there?")
    assert out.stats.stop_reason == "stop_token" and out.problem is None
    assert len(out.final.split()) >= 3 and html.escape(out.final, quote=False) in w.answer.value
    assert "(nothing)" in w.thinking.value  # it never learned to think: no analysis channel


def test_reply_stops_where_the_model_starts_the_users_turn():
    model = Scripted("<|channel|>final<|message|>Answer.<|end|><|start|>user<|message|>Me again.<|end|>"
                     "<|start|>assistant<|channel|>final<|message|>More.<|return|>")
    out = reply(model, [harmony.user("Hi")], "low", temperature=0.0)
    assert out.final == "Answer." and out.problem is None and out.stats.stop_reason == "other_role"
    assert [(m.role, m.channel) for m in out.messages] == [("assistant", "final")]


# ---- found by mutation testing: seeds per turn, the context's edge, cut-short thinking, counts, escaping --

ANSWER = "<|channel|>final<|message|>Hello there!<|return|>"


def test_each_turn_samples_with_the_next_seed(monkeypatch):
    seeds = []
    real = chat_widget_module.stream

    def recording(*args, seed=None, **kwargs):
        seeds.append(seed)
        return real(*args, seed=seed, **kwargs)

    monkeypatch.setattr(chat_widget_module, "stream", recording)
    w = ChatWidget(Scripted(ANSWER), seed=7, temperature=0.0)
    w.send("one")
    w.send("two")
    assert seeds == [7, 8]
    seeds.clear()
    w = ChatWidget(Scripted(ANSWER), seed=2**64 - 1, temperature=0.0)
    w.send("one")
    w.send("two")
    assert seeds == [2**64 - 1, 0]  # round, not past torch's range


def test_settings_that_would_fail_every_send_are_refused_when_the_widget_is_made():
    """They failed at each Send, in the status line, as if the message were at fault."""
    for settings, said in ((dict(max_new_tokens=0), "max_new_tokens must be at least 1 for a chat to answer, got 0"),
                           (dict(max_new_tokens=2.5), "max_new_tokens must be a whole number"),
                           (dict(temperature=-1.0), "temperature must be"),
                           (dict(top_p=0.0), r"top_p in \(0, 1\], got 1.0 and 0.0"),
                           (dict(seed=2**64), r"seed must be in -2\*\*63 .. 2\*\*64 - 1 \(torch's range\), got "),
                           (dict(seed="7"), "seed must be a whole number")):
        with pytest.raises(ValueError, match=said):
            ChatWidget(Scripted(ANSWER), **settings)


def test_a_prompt_that_fills_the_context_exactly_is_refused():
    n = len(conversation_ids([harmony.user("Hi")], "medium"))
    model = Scripted(ANSWER, context=n)
    w = ChatWidget(model, temperature=0.0)
    assert w.send("Hi") is None and "over this model's context" in w.status.value
    assert w.messages == [] and model.prompts == []
    model.config.context_length = n + 1
    out = w.send("Hi")  # one token of room: sent, though no answer fits in it, so the turn is dropped
    assert len(model.prompts) == 1 and out is None and "when the context window filled" in w.status.value


def test_thinking_cut_short_is_not_kept_as_the_answer():
    out = reply(Scripted("<|channel|>analysis<|message|>I keep thinking and thinking"), [harmony.user("Hi")],
                temperature=0.0, max_new_tokens=8)
    assert out.analysis and out.final == "" and out.messages == []


def test_a_reply_still_thinking_at_max_new_tokens_drops_the_turn_and_says_what_to_do():
    """No answer within the budget: the widget kept the user's message without one (the next prompt held two user
    messages in a row), emptied the box, and said only 'stopped: max_new_tokens'."""
    w = ChatWidget(Scripted("<|channel|>analysis<|message|>I keep thinking and thinking"), temperature=0.0,
                   max_new_tokens=8)
    w.text.value = "first question"
    assert w.send() is None
    assert w.messages == [] and w.replies == [] and w.text.value == "first question" and w.history.value == ""
    assert "I keep thinking" in w.thinking.value
    assert "still thinking after 8 tokens: this message is dropped" in w.status.value
    assert "Raise max_new_tokens or lower the reasoning effort" in w.status.value
    # No answer in any other way (babble, a tool call cut short, a second thought cut): dropped as well.
    for script in ("no harmony at all, just words and more words", "<|channel|>final to=functions.x<|message|>{\"a\"",
                   "<|channel|>analysis<|message|>Hmm.<|end|><|start|>assistant<|channel|>analysis<|message|>More and more"):
        w = ChatWidget(Scripted(script), temperature=0.0, max_new_tokens=8)
        assert w.send("first") is None and w.messages == [] and w.replies == []
        assert "this message is dropped" in w.status.value
    # An answer cut short is an answer: kept, as ever.
    w = ChatWidget(Scripted("<|channel|>final<|message|>A long answer that goes on and on"), temperature=0.0,
                   max_new_tokens=8)
    assert w.send("first") is not None and [m.role for m in w.messages] == ["user", "assistant"]


def test_a_reply_still_thinking_when_the_context_fills_drops_the_turn_too():
    """The terminal chat dropped it; the widget kept the user's message unanswered, emptied the box, and said only
    'stopped: context_full'."""
    n = len(conversation_ids([harmony.user("first question")], "medium"))
    w = ChatWidget(Scripted("<|channel|>analysis<|message|>I keep thinking and thinking and thinking and thinking",
                            context=n + 10), temperature=0.0, max_new_tokens=64)
    w.text.value = "first question"
    assert w.send() is None
    assert w.messages == [] and w.replies == [] and w.text.value == "first question"
    assert "stopped: context_full" in w.status.value
    assert "still thinking when the context window filled, after 10 tokens: this message is dropped" in w.status.value
    assert "Start a New chat, or lower the reasoning effort" in w.status.value


def test_the_message_token_is_not_counted_as_text():
    out = reply(Scripted(ANSWER), [harmony.user("Hi")], temperature=0.0)
    assert out.channel_tokens == {"final": len(ENC.encode("Hello there!"))}


def test_model_text_is_shown_as_text_not_html():
    w = ChatWidget(Scripted("<|channel|>final<|message|><b>bold</b> & more<|return|>"), temperature=0.0)
    w.send("Hi")
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in w.answer.value and "<b>bold" not in w.answer.value


def test_reply_decodes_with_the_chats_decoder(monkeypatch):
    # A CUDA graph on a GPU, the plain step elsewhere (static_decode.fast_step); cuda_graph reaches it.
    asked = []
    real = chat_widget_module.fast_step

    def recording(cuda_graph=None):
        asked.append(cuda_graph)
        return real(cuda_graph)

    monkeypatch.setattr(chat_widget_module, "fast_step", recording)
    out = reply(Scripted(ANSWER), [harmony.user("Hi")], temperature=0.0)
    reply(Scripted(ANSWER), [harmony.user("Hi")], temperature=0.0, cuda_graph=False)
    assert asked == [None, False] and out.final == "Hello there!"


def test_the_reply_ends_at_end_of_text_which_is_not_shown():
    """<|endoftext|> is one of gpt-oss's eos ids (generation_config.json): the reply printed it and ran on."""
    model = Scripted("<|channel|>final<|message|>Hello<|endoftext|> more text<|return|>")
    out = reply(model, [harmony.user("Hi")], "low", temperature=0.0, max_new_tokens=30)
    assert out.final == "Hello" and out.problem is None and out.stats.stop_reason == "stop_token"
    assert out.stats.tokens[-1] == ENC.encode_single_token("<|endoftext|>") == harmony.end_of_text(ENC) == 199999
    assert out.messages == [harmony.assistant("Hello", "final")]  # kept, as an answer that ended there


def test_a_tool_call_is_named_never_shown_as_the_answer_and_two_answers_are_two_paragraphs():
    """Final text to a recipient was shown as the answer (and not kept); answers in a row ran together."""
    out = reply(Scripted("<|channel|>final to=functions.x<|message|>{}<|call|>"), [harmony.user("Hi")],
                temperature=0.0)
    assert out.final == "" and out.channels == {"final to functions.x": "{}"} and out.tool_calls == ["functions.x"]
    assert "the model called functions.x" in ChatWidget._summary(out)
    out = reply(Scripted("<|channel|>final<|message|>One.<|end|><|start|>assistant<|channel|>final<|message|>Two."
                         "<|return|>"), [harmony.user("Hi")], temperature=0.0)
    assert out.final == "One.\n\nTwo."
    out = reply(Scripted("<|message|>Hi!<|return|>"), [harmony.user("Hi")], temperature=0.0)  # no channel
    assert out.final == "Hi!" and out.messages[-1].content == "Hi!"


def test_a_reply_the_reader_cut_says_so_not_max_new_tokens():
    out = reply(Scripted("<|channel|>poetry<|message|>verse<|end|>"), [harmony.user("Hi")], temperature=0.0,
                max_new_tokens=64)
    assert out.stats.stop_reason == "format_problem" and out.problem is not None


def test_closing_the_chat_lets_the_model_go_and_a_closed_chat_says_so():
    """A widget lives as long as the kernel: notebook 12's chat kept gpt-oss-20b (12.8 GiB of weights on the GPU) after `del model`."""
    import gc

    model = Scripted(THINK_THEN_ANSWER)
    gone = weakref.ref(model)
    w = ChatWidget(model, temperature=0.0)
    assert w.send("Hi") is not None
    del model
    gc.collect()
    assert gone() is not None  # held by the widget, which ipywidgets holds
    w.close()
    gc.collect()
    assert gone() is None and repr(w) == "ChatWidget(closed)"
    with pytest.raises(RuntimeError, match="closed.*make a new ChatWidget"):
        w.send("Hi again")


@pytest.mark.slow
def test_notebook_12s_recipe_for_giving_the_gpu_back_frees_every_tensor_of_the_model():
    """Its markdown shows how to free the model before loading another; run after the notebook, it must free it all
    (the notebook's byte table once kept every tensor in global names, so closing the chat freed nothing)."""
    import re

    import nbclient
    import nbformat

    path = Path(__file__).resolve().parents[1] / "notebooks" / "12_gpt_oss_20b.ipynb"
    nb = nbformat.read(path, as_version=4)
    (recipe,) = [m for c in nb.cells if c.cell_type == "markdown" and "### Giving the GPU back" in c.source
                 for m in re.findall(r"```python\n(.*?)```", c.source, re.S)]
    nb.cells = [c for c in nb.cells if c.cell_type == "code" and "solution" not in c.metadata.get("tags", [])]
    nb.cells.append(nbformat.v4.new_code_cell(
        "import gc, weakref\nheld = [weakref.ref(t) for t in [*model.parameters(), *model.buffers()]]\n"
        + recipe.replace("torch.cuda.empty_cache()", "torch.cuda.empty_cache() if torch.cuda.is_available() else None")
        + "\nprint('alive', sum(r() is not None for r in held), 'of', len(held))"))
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    alive, total = map(int, re.fullmatch(r"alive (\d+) of (\d+)\n", printed).groups())
    assert total > 50 and alive == 0, printed


def test_a_click_queued_behind_a_stopped_reply_does_not_send_again(monkeypatch):
    """Send clicked twice, then Stop: the second click, queued behind the first reply, ran at once and
    sent the message again, so Stop seemed not to work. A click that soon after a stop is ignored;
    a later one sends."""
    import gptoss_edu.widgets.chat as chat_widget

    clock = [100.0]
    monkeypatch.setattr(chat_widget.time, "monotonic", lambda: clock[0])
    model = FailsAfter(THINK_THEN_ANSWER, KeyboardInterrupt(), after=3)
    w = ChatWidget(model, temperature=0.0)
    w.text.value = "Hi"
    with pytest.raises(KeyboardInterrupt):
        w.send_button.click()
    assert len(model.prompts) == 1
    model.armed = False
    clock[0] += 0.05
    w.send_button.click()  # the queued second click
    assert len(model.prompts) == 1 and w.messages == []
    assert "interrupted" in w.status.value  # what Stop said stays in view
    clock[0] += 1.0
    w.send_button.click()  # the learner sends again
    assert len(model.prompts) == 2 and [m.content for m in w.messages if m.role == "user"] == ["Hi"]
    assert w.send("again") is not None  # send() itself, as a cell calls it, is never held back


def test_a_first_message_that_leaves_little_room_says_so():
    n = len(conversation_ids([harmony.user("Hi")], "medium"))
    w = ChatWidget(Scripted(ANSWER, context=n + 12), temperature=0.0, max_new_tokens=20)
    assert w.send("Hi") is not None
    assert w.status.value.endswith("; room for only 12 tokens") and "left out" not in w.status.value


def test_a_last_message_that_alone_fills_the_context_is_told_to_be_shortened():
    """With the system message it is exactly the context: no room for a reply even in a new chat."""
    long = "word " * 50
    n = len(conversation_ids([harmony.user(long)], "medium"))
    history = [harmony.user("Hi"), harmony.assistant("Hello there!", "final"), harmony.user(long)]
    with pytest.raises(ValueError) as error:
        reply(Scripted(ANSWER, context=n), history, temperature=0.0)
    assert str(error.value) == (f"this message (with the system message) is {n} tokens, over this model's context "
                                f"of {n}: shorten it")
    with pytest.raises(ValueError, match="the conversation is .* start a New chat"):
        reply(Scripted(ANSWER, context=n + 1), history, temperature=0.0)
