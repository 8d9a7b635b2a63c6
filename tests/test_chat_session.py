"""The terminal chat's logic with a stand-in model and a scripted token stream: no checkpoint needed

ChatSession reads only model.config.context_length and hands the model to generate.stream, which
these tests replace; run() is driven with its loading and its input replaced.
"""

from __future__ import annotations

import datetime
import io
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from gptoss_edu import chat, harmony
from gptoss_edu.__main__ import build_parser, main
from gptoss_edu.tokenizer import get_encoding
from simulated import OUT_OF_MEMORY, OUT_OF_MEMORY_IDS

ENC = get_encoding("o200k_harmony")
ANSWER = "<|channel|>final<|message|>Hello world!<|return|>"


def ids(text: str) -> list[int]:
    return ENC.encode(text, allowed_special="all")


def fake_model(context: int = 4096) -> SimpleNamespace:
    return SimpleNamespace(config=SimpleNamespace(context_length=context, name="fake"), num_parameters=lambda: 1e6,
                           modules=lambda: [])


def recording(text: str, calls: list, interrupt: bool = False, stop_reason: str | None = None):
    """A stand-in for generate.stream that records its settings and writes ``text``."""

    def fake_stream(model, prompt_ids, *, stats, stop_tokens, **kwargs):
        calls.append(kwargs)
        stats.prompt_tokens = len(prompt_ids)
        for token in ids(text):
            stats.tokens.append(token)
            yield token
            if token in stop_tokens:
                stats.stop_reason = "stop_token"
                return
        if interrupt:
            raise KeyboardInterrupt
        if stop_reason is not None:
            stats.stop_reason = stop_reason

    return fake_stream


def prompt_length(session: chat.ChatSession, text: str) -> int:
    session.messages.append(harmony.user(text))
    n = len(session.prompt_ids())
    session.messages.pop()
    return n


def test_sampling_settings_reach_the_generator_and_the_seed_moves_each_turn(monkeypatch):
    """--seed makes a session reproducible, but two turns must not sample with the same seed."""
    calls: list = []
    monkeypatch.setattr(chat, "stream", recording(ANSWER, calls))
    session = chat.ChatSession(fake_model(), max_new_tokens=33, temperature=0.7, top_p=0.9, seed=5, out=io.StringIO())
    session.reply("one")
    session.reply("two")
    assert [c["seed"] for c in calls] == [5, 6]
    assert all(c["top_p"] == 0.9 and c["temperature"] == 0.7 and c["max_new_tokens"] == 33 for c in calls)


def test_decode_steps_replay_a_cuda_graph_unless_no_cuda_graph_is_given(monkeypatch, capsys):
    calls: list = []
    monkeypatch.setattr(chat, "stream", recording(ANSWER, calls))
    monkeypatch.setattr(chat, "fast_step", lambda cuda_graph: ("fast_step", cuda_graph))
    chat.ChatSession(fake_model(), out=io.StringIO()).reply("one")
    assert calls[-1]["decoder"] == ("fast_step", None)  # a graph on a GPU, the plain step elsewhere
    def read_line(prompt):
        if not lines:
            raise EOFError  # Ctrl-D
        return lines.pop()

    monkeypatch.setattr(chat, "read_line", read_line)
    monkeypatch.setattr(chat, "resolve_model", lambda spec: Path(spec))
    monkeypatch.setattr(chat, "load_chat_model", lambda path, device, backend="torch": fake_model())
    for flags, want in (([], None), (["--no-cuda-graph"], False)):
        lines = ["hello"]
        assert chat.run(build_parser().parse_args(["chat", "--model", "fake", "--device", "cpu", *flags])) == 0
        assert calls[-1]["decoder"] == ("fast_step", want)
    capsys.readouterr()


def test_a_prompt_that_fills_the_context_exactly_is_not_sent(monkeypatch):
    """A prompt of context_length tokens leaves no room for a reply."""
    calls: list = []
    monkeypatch.setattr(chat, "stream", recording(ANSWER, calls))
    out = io.StringIO()
    session = chat.ChatSession(fake_model(), out=out)
    n = prompt_length(session, "hi")
    session.model = fake_model(context=n)
    assert session.reply("hi") is None and calls == [] and session.messages == []
    assert f"would be {n} tokens" in out.getvalue()
    session.model = fake_model(context=n + 1)  # one token of room: sent
    assert session.reply("hi") is not None and len(calls) == 1


def test_the_oldest_turns_are_left_out_to_leave_the_reply_its_room(monkeypatch):
    """The conversation grows every turn: once it would leave the reply less than max_new_tokens, the
    fewest oldest turns go (it was sent with a few tokens of room, or refused, until /reset)."""
    calls: list = []
    prompts: list = []
    fake = recording(ANSWER, calls)

    def stream(model, prompt_ids, **kwargs):
        prompts.append(list(prompt_ids))
        return fake(model, prompt_ids, **kwargs)

    monkeypatch.setattr(chat, "stream", stream)
    out = io.StringIO()
    session = chat.ChatSession(fake_model(), max_new_tokens=40, out=out)
    for word in ("one", "two", "three"):
        session.reply(word)
    assert "left out" not in out.getvalue()
    full = len(session.prompt_ids([*session.messages, harmony.user("four")]))
    without_one = len(session.prompt_ids([*session.messages[2:], harmony.user("four")]))
    session.model = fake_model(context=full + 39)  # one token short of max_new_tokens' room
    assert without_one + 40 <= full + 39  # leaving out the first turn is enough
    session.reply("four")
    assert "(the oldest turn is left out to leave room for the reply: the model no longer sees it)" in out.getvalue()
    assert [m.content for m in session.messages if m.role == "user"] == ["two", "three", "four"]
    assert prompts[-1] == session.prompt_ids(session.messages[:-1]) and len(prompts[-1]) == without_one
    # A context that leaves room only for the last message: every earlier turn goes, and the screen counts them.
    alone = len(session.prompt_ids([harmony.user("five")]))
    session.model = fake_model(context=alone + 40)
    session.reply("five")
    assert "(the 3 oldest turns are left out" in out.getvalue() and "room for only" not in out.getvalue()
    assert [m.content for m in session.messages if m.role == "user"] == ["five"]
    # Room for less than max_new_tokens even alone: every earlier turn goes, and the note says what room is left.
    session.model = fake_model(context=len(session.prompt_ids([*session.messages, harmony.user("six")])) - 5)
    session.reply("six")
    alone = len(session.prompt_ids([harmony.user("six")]))
    assert f"(the oldest turn is left out to leave room for the reply: the model no longer sees it; even so the " \
           f"reply has room for only {session.model.config.context_length - alone} tokens)" in out.getvalue()


def test_a_failed_turn_puts_back_the_turns_left_out_for_it(monkeypatch):
    """A turn that fails ("the conversation is as before it") gets back what was left out to make room for it."""
    monkeypatch.setattr(chat, "stream", recording(ANSWER, []))
    out = io.StringIO()
    session = chat.ChatSession(fake_model(), max_new_tokens=40, out=out)
    session.reply("one")
    session.reply("two")
    before = list(session.messages)
    session.model = fake_model(context=len(session.prompt_ids([*before, harmony.user("three")])) + 20)

    def broken(*args, **kwargs):
        yield from ()
        raise ValueError("a bug")

    monkeypatch.setattr(chat, "stream", broken)
    with pytest.raises(ValueError, match="a bug"):
        session.reply("three")
    assert "the 2 oldest turns are left out" in out.getvalue()  # this turn did leave both out
    assert session.messages == before and session.turn == 2


def test_a_reply_that_runs_into_the_context_window_says_so(monkeypatch):
    out = io.StringIO()
    session = chat.ChatSession(fake_model(), max_new_tokens=100, out=out)
    text = "<|channel|>final<|message|>Hello world"  # no end: generation stopped at the window
    session.model = fake_model(context=prompt_length(session, "q") + len(ids(text)))
    monkeypatch.setattr(chat, "stream", recording(text, [], stop_reason="context_full"))
    session.reply("q")
    assert "the context window is full: the next message leaves out the oldest turns (/reset starts over)" \
        in out.getvalue()
    assert "--max-new-tokens" not in out.getvalue()


def test_a_clean_reply_is_not_reported_as_malformed(monkeypatch):
    monkeypatch.setattr(chat, "stream", recording(ANSWER, []))
    out = io.StringIO()
    chat.ChatSession(fake_model(), out=out).reply("hi")
    assert "Hello world!" in out.getvalue() and "harmony format" not in out.getvalue()


@pytest.mark.parametrize("text", ["<|channel|>analysis<|message|>Still thinking", "<|channel|>final<|message|>"])
def test_an_interrupt_keeps_no_thinking_and_no_empty_answer(monkeypatch, text):
    """Interrupted thinking is not an answer, and an answer with no text yet is nothing to keep."""
    monkeypatch.setattr(chat, "stream", recording(text, [], interrupt=True))
    out = io.StringIO()
    session = chat.ChatSession(fake_model(), out=out)
    # Said to the caller too (a notebook cell reads it): the budget did not run out, whatever generate left there.
    assert session.reply("q").stop_reason == "interrupted"
    assert "interrupted" in out.getvalue()
    assert [(m.role, m.text) for m in session.messages] == [("user", "q")]




@pytest.mark.parametrize("error", OUT_OF_MEMORY, ids=OUT_OF_MEMORY_IDS)
@pytest.mark.parametrize("after", [0, 3])
def test_running_out_of_memory_drops_the_turn_and_keeps_the_conversation(monkeypatch, after, error):
    """In prefill (no token yet) or part-way through the reply: the turn is undone and the session goes on."""
    freed = []

    def out_of_memory(model, prompt_ids, *, stats, stop_tokens, **kwargs):
        for token in ids(ANSWER)[:after]:
            stats.tokens.append(token)
            yield token
        raise error

    monkeypatch.setattr(chat, "release_memory", lambda: freed.append(True))
    out = io.StringIO()
    session = chat.ChatSession(fake_model(), out=out, seed=7)
    calls = []
    monkeypatch.setattr(chat, "stream", recording(ANSWER, calls))
    session.reply("one")
    kept = [(m.role, m.text) for m in session.messages]
    monkeypatch.setattr(chat, "stream", out_of_memory)
    assert session.reply("two, much longer") is None
    assert [(m.role, m.text) for m in session.messages] == kept and freed == [True]
    assert "out of memory with the conversation at" in out.getvalue() and "/reset" in out.getvalue()
    monkeypatch.setattr(chat, "stream", recording(ANSWER, calls))
    assert session.reply("three") is not None and len(session.messages) == len(kept) + 2
    assert [c["seed"] for c in calls] == [7, 8]  # the dropped turn used no seed


def test_an_error_that_is_not_out_of_memory_is_not_called_one(monkeypatch):
    def broken(model, prompt_ids, *, stats, stop_tokens, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
        yield

    session = chat.ChatSession(fake_model(), out=io.StringIO())
    monkeypatch.setattr(chat, "stream", broken)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        session.reply("one")


def test_a_commentary_preamble_is_labelled_and_dimmed(monkeypatch):
    monkeypatch.setattr(chat, "stream", recording(
        "<|channel|>commentary<|message|>Note.<|end|><|start|>assistant<|channel|>final<|message|>Answer.<|return|>", []))
    out = io.StringIO()
    chat.ChatSession(fake_model(), out=out, color=True).reply("q")
    assert out.getvalue().startswith(chat.DIM + "[commentary] Note." + chat.RESET + "\nAnswer.\n")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("env, dimmed", [({}, True), ({"NO_COLOR": "1"}, False), ({"TERM": "dumb"}, False),
                                         ({"NO_COLOR": ""}, True)])  # no-color.org: set and not empty
def test_a_terminal_gets_dim_thinking_unless_it_asks_for_no_colour(monkeypatch, env, dimmed):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(chat, "stream", recording("<|channel|>analysis<|message|>Hm.<|end|>"
                                                  "<|start|>assistant<|channel|>final<|message|>Yes.<|return|>", []))
    out = Terminal()
    chat.ChatSession(fake_model(), out=out).reply("q")
    assert (chat.DIM in out.getvalue()) is dimmed and "Yes." in out.getvalue()


@pytest.mark.parametrize("option, value, message", [
    ("--max-new-tokens", "0", "--max-new-tokens must be at least 1"),
    ("--top-p", "0", "--top-p must be in (0, 1]"),
    ("--seed", "-1", "--seed must be in 0 .. 2**63 - 1"),
])
def test_out_of_range_options_are_refused_before_loading(capsys, monkeypatch, option, value, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["chat", "--model", "no/such-model", option, value]) == 2
    assert message in capsys.readouterr().err


def test_today_is_todays_date_and_cuda_needs_a_gpu(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(["chat", "--model", "x", "--date", "today", "--device", "cpu"])
    chat._check_arguments(args)
    assert args.date == datetime.date.today().isoformat()
    monkeypatch.setattr(chat.torch.cuda, "is_available", lambda: False)
    assert main(["chat", "--model", "no/such-model", "--device", "cuda:1"]) == 2
    assert "no CUDA GPU is available here" in capsys.readouterr().err


def test_ctrl_c_at_the_prompt_does_not_quit_and_reset_ignores_spaces(monkeypatch, capsys):
    """Ctrl-C while typing clears the line; only Ctrl-D (end of input) ends the chat."""
    typed = iter([KeyboardInterrupt, "  /reset  ", EOFError])
    read = []

    def fake_read_line(prompt):
        read.append(prompt)
        item = next(typed)
        if isinstance(item, type) and issubclass(item, BaseException):
            raise item
        return item

    monkeypatch.setattr(chat, "read_line", fake_read_line)
    monkeypatch.setattr(chat, "resolve_model", lambda spec: Path(spec))
    monkeypatch.setattr(chat, "load_chat_model", lambda path, device, backend="torch": fake_model())
    args = build_parser().parse_args(["chat", "--model", "fake", "--device", "cpu"])
    assert chat.run(args) == 0
    out = capsys.readouterr().out
    assert len(read) == 3 and "(Ctrl-D quits)" in out and "(new conversation)" in out
    assert out.startswith("fake: 1 M parameters on cpu (torch backend), loaded in ")  # not '0.001B'


@pytest.mark.parametrize("error", [RuntimeError("mat1 and mat2 shapes cannot be multiplied"), ValueError("bad id")])
def test_a_reply_that_fails_leaves_the_conversation_and_the_seed_as_before(monkeypatch, error):
    """The user's message used to stay, unanswered: sent again, it stood twice in the conversation."""
    def broken(model, prompt_ids, *, stats, stop_tokens, **kwargs):
        raise error
        yield

    calls = []
    session = chat.ChatSession(fake_model(), out=io.StringIO(), seed=7)
    monkeypatch.setattr(chat, "stream", recording(ANSWER, calls))
    session.reply("one")
    before, turn = list(session.messages), session.turn
    monkeypatch.setattr(chat, "stream", broken)
    with pytest.raises(type(error)):
        session.reply("two")
    assert session.messages == before and session.turn == turn
    monkeypatch.setattr(chat, "stream", recording(ANSWER, calls))
    session.reply("two")
    assert [m.text for m in session.messages if m.role == "user"] == ["one", "two"]
    assert [c["seed"] for c in calls] == [7, 8]  # the failed turn used no seed


@pytest.mark.parametrize("setting, value", [("temperature", -1.0), ("top_p", 0.0), ("max_new_tokens", 2.5),
                                            ("max_new_tokens", None)])
def test_a_session_with_a_bad_setting_is_refused_when_made(setting, value):
    with pytest.raises(ValueError, match=setting):
        chat.ChatSession(fake_model(), out=io.StringIO(), **{setting: value})


def test_the_reply_ends_at_end_of_text_which_is_not_shown(monkeypatch):
    """<|endoftext|> is one of gpt-oss's eos ids (generation_config.json): the chat printed it as text and went on."""
    monkeypatch.setattr(chat, "stream", recording("<|channel|>final<|message|>Hello<|endoftext|> more text<|return|>",
                                                  []))
    out = io.StringIO()
    session = chat.ChatSession(fake_model(), out=out)
    stats = session.reply("hi")
    assert stats.stop_reason == "stop_token" and stats.tokens[-1] == harmony.end_of_text(ENC)
    assert "endoftext" not in out.getvalue() and "more text" not in out.getvalue()
    assert "max-new-tokens" not in out.getvalue() and "harmony format" not in out.getvalue()
    assert session.messages[-1] == harmony.assistant("Hello", "final")  # kept, as an answer that ended there


def test_escape_sequences_a_model_writes_are_shown_not_obeyed(monkeypatch):
    """A model's text reached the terminal raw: a title change, a screen clear, a clipboard write (OSC 52)."""
    title, clear, clipboard = "\x1b]0;owned\x07", "\x1b[2J", "\x1b]52;c;cm0gLXJm\x07"
    monkeypatch.setattr(chat, "stream", recording(
        f"<|channel|>commentary to=functions.x{clear}<|message|>{{}}<|call|>", []))
    out = io.StringIO()
    chat.ChatSession(fake_model(), out=out, color=False).reply("q")
    monkeypatch.setattr(chat, "stream", recording(f"<|channel|>final<|message|>{title}{clear}Hi\r{clipboard}<|return|>", []))
    chat.ChatSession(fake_model(), out=out, color=False).reply("q")
    shown = out.getvalue()
    assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown, repr(shown)
    assert "\\x1b]0;owned\\x07\\x1b[2JHi\\x0d\\x1b]52;c;cm0gLXJm\\x07" in shown  # shown as text, nothing lost
    assert "to functions.x\\x1b[2J" in shown


def test_printable_keeps_text_newlines_and_tabs_and_shows_every_control_character():
    from gptoss_edu.terminal import printable

    assert printable("naïve — 日本\n\tok ✅") == "naïve — 日本\n\tok ✅"
    controls = [chr(c) for c in [*range(0x00, 0x09), *range(0x0b, 0x20), *range(0x7f, 0xa0)]]
    assert all(printable(c) == f"\\x{ord(c):02x}" for c in controls)
    # Bidirectional overrides reorder what is shown ("txt.exe" read backwards); an emoji's joiner stays.
    assert printable("file\u202etxt.exe \u2066x\u2069 a\u2028b 👍\u200d") == \
        "file\\u202etxt.exe \\u2066x\\u2069 a\\u2028b 👍\u200d"


def test_a_windows_line_end_from_the_model_is_a_line_end():
    from gptoss_edu.terminal import printable

    assert ids("a\r\nb") == [ids("a")[0], *ids("\r\n"), ids("b")[0]] and len(ids("\r\n")) == 1  # one token
    assert printable("First line\r\nSecond line\rover") == "First line\nSecond line\\x0dover"


# ---- a model that misbehaves (a review with scripted token streams) ----------------------------------------

def say(text: str, **kw) -> tuple[str, chat.ChatSession]:
    """What the terminal chat prints for one reply of ``text`` (with ``kw`` for the stand-in stream)."""
    session = chat.ChatSession(fake_model(kw.pop("context", 4096)), max_new_tokens=64, out=io.StringIO())
    chat.stream = recording(text, [], **kw)
    try:
        session.reply("hi")
    except KeyboardInterrupt:
        pass
    return session.out.getvalue(), session


@pytest.fixture()
def scripted(monkeypatch):
    monkeypatch.setattr(chat, "stream", chat.stream)  # restored after the test, whatever say() set


def test_a_reply_the_reader_cut_is_not_called_max_new_tokens(scripted):
    printed, _ = say("<|channel|>poetry<|message|>verse<|end|>")
    assert "stopped at --max-new-tokens" not in printed and "does not follow the harmony format" in printed


def test_a_header_cut_by_ctrl_c_or_a_full_context_is_not_blamed_on_the_model(scripted):
    printed, _ = say("<|channel|>final", interrupt=True)
    assert "interrupted" in printed and "no complete message header" not in printed
    room = prompt_length(chat.ChatSession(fake_model(), out=io.StringIO()), "hi") + 2  # the two header tokens fill it
    printed, _ = say("<|channel|>final", stop_reason="context_full", context=room)
    assert "no answer when the context window filled" in printed and "no complete message header" not in printed
    printed, _ = say("<|channel|>final<|message|", stop_reason="max_new_tokens")  # the model's own doing
    assert "no complete message header" in printed
    # The token budget cut a header that was going well (--max-new-tokens 1 or 2): no fault of the model's either.
    for header in ("<|channel|>", "<|channel|>final", " to=functions.get_weather<|channel|>commentary <|constrain|>"):
        printed, _ = say(header, stop_reason="max_new_tokens")
        assert "no complete message header" not in printed and "at --max-new-tokens 64" in printed, header
    for babble in ("blah " * 40, "random words"):  # longer than a header, or not begun as one
        printed, _ = say(babble, stop_reason="max_new_tokens")
        assert "no complete message header" in printed, babble


def test_an_answer_addressed_to_a_tool_is_labelled_and_never_kept(scripted):
    printed, session = say("<|channel|>final to=functions.x<|message|>{}<|call|>")
    assert "[final to functions.x] {}" in printed and "the model called functions.x" in printed
    assert [m.role for m in session.messages] == ["user"]
    printed, session = say("<|channel|>final to=functions.x<|message|>partial", stop_reason="max_new_tokens")
    assert session.messages == []  # cut short, it was kept as a plain answer; no answer at all: the turn is dropped
    assert "no answer at --max-new-tokens 64: this message is dropped" in printed


def test_two_answers_in_a_row_are_two_lines_and_no_channel_is_an_answer(scripted):
    printed, _ = say("<|channel|>final<|message|>One.<|end|><|start|>assistant<|channel|>final<|message|>Two.<|return|>")
    assert "One.\nTwo.\n" in printed
    printed, session = say("<|message|>Hi<|return|>")
    assert printed.startswith("Hi\n") and "[None]" not in printed
    assert session.messages[-1].content == "Hi"
    # Kept as the final answer, finished as well as cut short, so that the next prompt drops this turn's thinking.
    _, session = say("<|channel|>analysis<|message|>SECRET<|end|><|start|>assistant<|message|>Hi<|return|>")
    assert [(m.channel, m.content) for m in session.messages[1:]] == [("analysis", "SECRET"), ("final", "Hi")]
    session.messages.append(harmony.user("and?"))
    assert "SECRET" not in ENC.decode(session.prompt_ids())


def test_a_label_without_text_ends_its_line_and_a_split_windows_line_end_is_one(scripted):
    printed, _ = say("<|channel|>analysis<|message|>", stop_reason="max_new_tokens")
    assert "[thinking] \n(" in printed
    cr, lf = ids("a\r")[-1], ids("\nb")[0]
    assert ENC.decode([cr]).endswith("\r") and ENC.decode([lf]).startswith("\n")
    def split_line_end(model, prompt_ids, *, stats, stop_tokens, **kw):
        yield from ids("<|channel|>final<|message|>") + ids("a\r") + ids("\nb") + ids("<|return|>")

    chat.stream = split_line_end
    session = chat.ChatSession(fake_model(), out=io.StringIO())
    session.reply("hi")
    assert "a\nb\n" in session.out.getvalue() and "\\x0d" not in session.out.getvalue()


def test_ctrl_c_while_the_conversation_renders_leaves_no_message_behind(scripted, monkeypatch):
    session = chat.ChatSession(fake_model(), out=io.StringIO())

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(harmony, "render_conversation", interrupted)
    with pytest.raises(KeyboardInterrupt):
        session.reply("hi")
    assert session.messages == []


def test_an_answer_with_no_channel_cut_short_is_kept_as_shown(scripted):
    _, session = say("<|message|>Hello there", stop_reason="max_new_tokens")
    assert session.messages[-1].content == "Hello there"  # shown as the answer, and kept as one


def test_thinking_that_ends_in_a_carriage_return_stays_dim(scripted, monkeypatch):
    session = chat.ChatSession(fake_model(), out=io.StringIO(), color=True)
    chat.stream = recording("<|channel|>analysis<|message|>think\r<|end|><|start|>assistant<|channel|>final"
                            "<|message|>A<|return|>", [])
    session.reply("hi")
    shown = session.out.getvalue()
    assert f"think{chat.RESET}" not in shown and "think\\x0d" in shown, repr(shown)


def test_a_reply_still_thinking_when_the_context_fills_is_dropped_too(scripted):
    """With --max-new-tokens above half the context the window, not the budget, ends a long thought: the user's
    message stood unanswered, and the note promised that older turns would be left out, which none were."""
    room = prompt_length(chat.ChatSession(fake_model(), out=io.StringIO()), "hi") + 6
    printed, session = say("<|channel|>analysis<|message|>Let me think about", stop_reason="context_full",
                           context=room)
    assert session.messages == [] and session.turn == 0
    assert "still thinking when the context window filled: this message is dropped" in printed
    assert "leaves out the oldest turns" not in printed


def test_a_reply_still_thinking_at_max_new_tokens_is_dropped_with_what_to_do(scripted):
    """Kept, the user's message stood unanswered and the next prompt held two user messages in a row."""
    printed, session = say("<|channel|>analysis<|message|>Let me think about", stop_reason="max_new_tokens")
    assert session.messages == [] and session.turn == 0
    assert "still thinking at --max-new-tokens 64: this message is dropped, the conversation is as before it" in printed
    assert "[thinking] Let me think about" in printed
    # Cut short anywhere else, the turn is kept as before: an answer as far as it got, or a tool call not kept.
    _, session = say("<|channel|>analysis<|message|>Hmm.<|end|><|start|>assistant<|channel|>final<|message|>Ye",
                     stop_reason="max_new_tokens")
    assert [(m.role, m.channel) for m in session.messages] == [("user", None), ("assistant", "analysis"),
                                                                ("assistant", "final")]
    _, session = say("<|channel|>analysis<|message|>Let me think about", interrupt=True)  # Ctrl-C: as before
    assert [m.role for m in session.messages] == ["user"]
    # A first thought finished and a second one cut: still no answer (the finished thought was kept with the turn).
    printed, session = say("<|channel|>analysis<|message|>Hmm.<|end|><|start|>assistant<|channel|>analysis<|message|>"
                           "More", stop_reason="max_new_tokens")
    assert session.messages == [] and "still thinking at --max-new-tokens 64" in printed


@pytest.mark.parametrize("seed", range(5))
def test_turns_that_fit_leaves_out_the_fewest_whole_turns(seed):
    """The binary search gives what trying each turn boundary in order gives, on conversations with tool turns."""
    import random

    rng = random.Random(seed)
    messages = []
    for turn in range(rng.randint(1, 8)):
        messages.append(harmony.user("u" * rng.randint(1, 30)))
        for _ in range(rng.randint(0, 3)):  # the assistant's messages, a tool's replies
            role = rng.choice(["assistant", "tool"])
            messages.append(harmony.Message(role, "a" * rng.randint(1, 30),
                                            name="functions.f" if role == "tool" else None))
    length = lambda kept: sum(len(m.content) for m in kept)  # noqa: E731
    starts = [i for i, m in enumerate(messages) if m.role == "user"]
    for budget in range(0, length(messages) + 2):
        fits = [s for s in starts if length(messages[s:]) <= budget]
        want = fits[0] if fits else starts[-1]
        got = harmony.turns_that_fit(messages, length, budget)
        assert got == want, (budget, got, want)
        assert messages[got].role == "user"  # a whole turn: the kept conversation starts at a user message


def test_a_first_message_that_leaves_little_room_says_so(monkeypatch):
    """Nothing earlier to leave out: the reply runs with less than --max-new-tokens, and the screen says how much."""
    monkeypatch.setattr(chat, "stream", recording(ANSWER, []))
    out = io.StringIO()
    session = chat.ChatSession(fake_model(), max_new_tokens=40, out=out)
    n = prompt_length(session, "hi")
    session.model = fake_model(context=n + 25)
    session.reply("hi")
    assert "(the reply has room for only 25 tokens of the context window)" in out.getvalue()
    session.model = fake_model(context=len(session.prompt_ids([*session.messages, harmony.user("again")])) + 40)
    session.reply("again")  # room enough: no note
    assert out.getvalue().count("room for only") == 1


def test_make_room_renders_each_length_once_and_gives_the_kept_prompt():
    """The binary search and the prompt sent share their renders: none is made twice."""
    messages = []
    for i in range(12):
        messages += [harmony.user(f"question {i} " * 5), harmony.Message("assistant", f"answer {i} " * 5)]
    messages.append(harmony.user("last"))
    session = chat.ChatSession(fake_model(), out=io.StringIO())
    calls = []

    def render(kept):
        calls.append(len(kept))
        return session.prompt_ids(list(kept))

    full = len(render(messages))
    calls.clear()
    fit = harmony.make_room(messages, render, context=full - 50 + 40, max_new_tokens=40)
    assert len(calls) == len(set(calls)) and len(calls) <= 6  # 1 + a binary search over 12 turns
    assert fit.left_out >= 1 and fit.kept == messages[2 * fit.left_out:] and fit.prompt == session.prompt_ids(fit.kept)
    assert fit.room == full - 50 + 40 - len(fit.prompt) and fit.room >= 40 and not fit.short


def test_a_reply_setting_over_half_the_context_keeps_a_conversation_that_fits_half():
    """The room asked for is at most half the context: max_new_tokens=4096 must not empty a 200-token chat."""
    messages = [harmony.user("a"), harmony.Message("assistant", "b"), harmony.user("c"),
                harmony.Message("assistant", "d"), harmony.user("e")]

    def render(kept):  # twenty tokens a message
        return list(range(20 * len(kept)))

    fit = harmony.make_room(messages, render, context=200, max_new_tokens=4096)
    assert (fit.kept, fit.left_out, fit.room, fit.short) == (messages, 0, 100, False)
    fit = harmony.make_room(messages, render, context=160, max_new_tokens=4096)  # 100 tokens, over half of 160
    assert (fit.left_out, len(fit.kept), fit.room, fit.short) == (1, 3, 100, False)
