"""Notebook 11's exercise check: a right renderer passes, each typical mistake is named."""

from __future__ import annotations

import re

import pytest

from gptoss_edu import harmony
from gptoss_edu.exercises.nb11 import check_render_message, fresh_messages
from gptoss_edu.tokenizer import data_dir, get_encoding

ENC = get_encoding("o200k_harmony")
SP = ENC.encode_single_token


def renderer(end_final="<|end|>", end_call="<|call|>", author_is_role=False, channel="header",
             content=ENC.encode_ordinary, recipient=True, end=True, recipient_last=False):
    """A hand-written renderer with one knob per typical mistake."""
    def render(m: harmony.Message) -> list[int]:
        ids = [SP("<|start|>")] + ENC.encode_ordinary(m.role if author_is_role or m.role != "tool" else m.name)
        if recipient and m.recipient and not recipient_last:
            ids += ENC.encode_ordinary(f" to={m.recipient}")
        if m.channel and channel == "header":
            ids += [SP("<|channel|>")] + ENC.encode_ordinary(m.channel)
        if recipient and m.recipient and recipient_last:  # the order the model may generate
            ids += ENC.encode_ordinary(f" to={m.recipient}")
        ids.append(SP("<|message|>"))
        if m.channel and channel == "content":
            ids += [SP("<|channel|>")] + ENC.encode_ordinary(m.channel)
        ids += content(m.content)
        if not end:
            return ids
        if m.role == "assistant" and m.recipient:
            ids.append(SP(end_call))
        else:
            ids.append(SP(end_final if m.channel == "final" else "<|end|>"))
        return ids
    return render


def raises(m):
    raise NotImplementedError("fill me in")


def test_right_answer_passes():
    result = check_render_message(renderer())
    assert result.passed and repr(result).startswith("✅")


def test_package_version_passes():
    assert check_render_message(harmony.render_message).passed


@pytest.mark.parametrize("fn,message", [
    (renderer(end=False), "has no end"),
    (renderer(end_final="<|return|>"), "ends with <|return|>"),
    (renderer(end_call="<|end|>"), r"tool call\) ends with <\|end\|>"),
    (renderer(end_final="<|call|>"), "only an assistant message addressed to a tool ends with <|call|>"),
    (renderer(author_is_role=True), "starts with the role 'tool'"),
    (renderer(channel="none"), "has no channel"),
    (renderer(channel="content"), "wrong channel placement"),
    (renderer(content=lambda t: ENC.encode(t, allowed_special="all")), "became control tokens"),
    (renderer(recipient=False), "has no recipient"),
    (renderer(recipient_last=True), "comes after the channel.*right after the author"),
    (lambda m: ENC.encode_ordinary(ENC.decode(harmony.render_message(m))), "no control token in your ids"),
    (lambda m: ENC.encode(f"<|start|>{m.role}<|message|>{m.content}<|end|>"),
     r"raised ValueError: .*disallowed special token.*encode_single_token"),
    (lambda m: None, "returned None"),
    (lambda m: ENC.decode(harmony.render_message(m)), "list of token ids .* got str"),
    (raises, "raised NotImplementedError: fill me in"),
])
def test_typical_mistakes_are_named(fn, message):
    result = check_render_message(fn)
    assert not result.passed
    assert repr(result).startswith("❌ not yet")
    assert re.search(message, result.message), result.message


def test_a_wrong_answer_of_no_known_kind_says_where_it_differs():
    result = check_render_message(lambda m: harmony.render_message(m)[:-1] + ENC.encode_ordinary("\n") + [SP("<|end|>")])
    assert not result.passed and "differ from token" in result.message and "should read" in result.message


def test_fresh_messages_cover_every_kind_and_match_openai_harmony(monkeypatch):
    """The check's expectations are gptoss_edu's renderer; it must equal openai-harmony's on them."""
    oh = pytest.importorskip("openai_harmony")
    monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", str(data_dir()))  # offline: the shipped o200k_base
    ref = oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)
    messages = fresh_messages()
    assert {m.role for m in messages} == {"user", "assistant", "tool"}
    assert {m.channel for m in messages if m.role == "assistant"} == set(harmony.CHANNELS)
    for m in messages:
        theirs = oh.Message.from_author_and_content(oh.Author(role=oh.Role(m.role), name=m.name), m.content)
        if m.channel:
            theirs = theirs.with_channel(m.channel)
        if m.recipient:
            theirs = theirs.with_recipient(m.recipient)
        assert harmony.render_message(m) == ref.render(theirs), m
    assert fresh_messages() == fresh_messages(11) and fresh_messages(1) != fresh_messages(2)


# ---- found by mutation testing: near misses, in-place changes, odd types, every case the check must cover ----

def test_a_tuple_of_ids_passes():
    # The check accepts a tuple of ids as well as a list.
    r = check_render_message(lambda m: tuple(harmony.render_message(m)))
    assert r.passed, r.message


def test_a_list_of_token_strings_gets_a_verdict():
    # Tokens as text pieces instead of ids: a list, but not of ints; the check must say so, not crash.
    r = check_render_message(lambda m: [ENC.decode([t]) for t in harmony.render_message(m)])
    assert not r.passed and "list of token ids (Python ints); one of yours is '<|start|>', of type str" in r.message, r.message


def test_ids_past_the_message_end_are_named_as_such():
    r = check_render_message(lambda m: harmony.render_message(m) + [ENC.encode_ordinary(" more")[0]])
    assert not r.passed and "expected nothing (the message ends there)" in r.message, r.message


def test_ids_of_another_integer_type_are_named():
    # numpy's integers are not Python ints: say which element, and how to convert it.
    import numpy as np

    r = check_render_message(lambda m: [np.int64(t) for t in harmony.render_message(m)])
    assert not r.passed and "of type int64" in r.message and "int(...)" in r.message, r.message


def test_a_none_among_the_ids_is_named_not_a_traceback():
    """A helper that forgets `return` puts None in the list: the check raised a TypeError comparing it."""
    r = check_render_message(lambda m: harmony.render_message(m)[:2] + [None])
    assert not r.passed and "one of yours is None" in r.message and "forget to `return`" in r.message, r.message


@pytest.mark.parametrize("bad", [-1, 201088, 10**9])
def test_an_id_the_tokenizer_does_not_have_is_named_not_a_traceback(bad):
    """A placeholder like -1, or an id past the vocabulary: the check must not crash decoding it."""
    r = check_render_message(lambda m: harmony.render_message(m)[:-1] + [bad])
    assert not r.passed and f"your id {bad} (at position" in r.message and "is not a token of" in r.message, r.message


def test_the_right_text_cut_into_other_tokens_is_named_as_such():
    """' ' and 'to=' encoded apart are two tokens where the model reads ' to': the message showed the same text."""
    def split(m):
        ids = renderer()(m)
        if not m.recipient:
            return ids
        joined = ENC.encode_ordinary(f" to={m.recipient}")
        at = next(i for i in range(len(ids)) if ids[i:i + len(joined)] == joined)
        apart = ENC.encode_ordinary(" ") + ENC.encode_ordinary("to=") + ENC.encode_ordinary(m.recipient)
        return ids[:at] + apart + ids[at + len(joined):]

    result = check_render_message(split)
    assert not result.passed and "is right, but from token 2 on it is cut into other tokens" in result.message
    assert "encode each piece whole: the author with ' to={recipient}' as one piece" in result.message


def test_one_control_token_written_as_text_is_named_as_such():
    """Only <|channel|> spelled out: the text decodes the same, but the fix is its id, not a different split."""
    channel = SP("<|channel|>")

    def spelled(m):
        ids = renderer()(m)
        at = ids.index(channel) if channel in ids else None
        return ids if at is None else ids[:at] + ENC.encode_ordinary("<|channel|>") + ids[at + 1:]

    result = check_render_message(spelled)
    assert not result.passed and f"'<|channel|>' in the" in result.message, result.message
    assert f"is written as text, {len(ENC.encode_ordinary('<|channel|>'))} ordinary tokens; the control token is " \
           f"one id, {channel}" in result.message


# ---- found by a review of wrong answers that passed ----

@pytest.mark.parametrize("is_call", [
    lambda m: m.recipient is not None and m.recipient.startswith("functions."),
    lambda m: m.role == "assistant" and m.channel == "commentary" and m.recipient is not None,
])
def test_a_tool_call_rule_that_misses_built_in_tools_fails(is_call):
    """gpt-oss calls its built-in tools (python, browser.*) from the analysis channel: those end with <|call|> too."""
    def render(m):
        ids = harmony.render_message(m)
        return ids[:-1] + [SP("<|call|>" if is_call(m) else "<|end|>")]

    result = check_render_message(render)
    assert not result.passed and "analysis channel addressed to python (a tool call) ends with <|end|>" in result.message, \
        result.message
