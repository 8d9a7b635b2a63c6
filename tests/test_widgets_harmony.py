"""Notebook 11's views and explorer: tokens are classified and shown right, and the controls re-render."""

from __future__ import annotations

import pytest

from gptoss_edu import harmony
from gptoss_edu.tokenizer import get_encoding
from gptoss_edu.widgets.harmony import (KIND_COLOURS, SPLIT_COLOURS, TokenView, harmony_explorer, token_kinds, token_texts, tokens_html)

ENC = get_encoding("o200k_harmony")


def test_token_kinds_follow_the_message_structure():
    ids = harmony.render_message(harmony.assistant("Hi!", "final"))
    kinds = token_kinds(ids)
    texts = token_texts(ids)
    assert list(zip(texts, kinds)) == [
        ("<|start|>", "special"), ("assistant", "header"), ("<|channel|>", "special"), ("final", "header"),
        ("<|message|>", "special"), ("Hi", "content"), ("!", "content"), ("<|end|>", "special"),
    ]
    # A completion starts inside the header the prompt opened with <|start|>assistant.
    completion = ENC.encode("<|channel|>final<|message|>ok<|return|>plain", allowed_special="all")
    assert token_kinds(completion, in_header=True) == ["special", "header", "special", "content", "special", "text"]
    assert token_kinds(completion)[1] == "text"


def test_tokens_of_an_encoding_without_harmony_are_text_and_specials():
    """A TokenView of GPT-2 tokens (notebook 11 makes one) left as a cell's last line showed a KeyError traceback:
    its HTML asked GPT-2's encoding for <|start|>."""
    gpt2 = get_encoding("gpt2")
    ids = gpt2.encode("Hi<|endoftext|>there", allowed_special="all")
    assert token_kinds(ids, gpt2) == ["text", "special", "text"]
    view = TokenView(ids, gpt2)
    assert view._repr_html_() == tokens_html(ids, gpt2) and view._repr_html_().count("<span title='id ") == 3
    assert "control token" in view._repr_html_()


def test_token_texts_show_bytes_of_a_cut_character():
    gpt2 = get_encoding("gpt2")
    texts = token_texts(gpt2.encode_ordinary("🍕"), gpt2)
    assert "".join(texts).count("\\x") == 4 and all(t.startswith("\\x") for t in texts)
    assert token_texts(ENC.encode_ordinary("naïve")) == [ENC.decode([t]) for t in ENC.encode_ordinary("naïve")]


def test_views_html_and_plain_text():
    ids = harmony.render_conversation([harmony.system("low"), harmony.user("a\nb <&>")])
    page = tokens_html(ids)
    assert page.count("<span title='id ") == len(ids)
    assert "<&>" not in page and "&lt;" in page and "&amp;" in page and "↵" in page and "control token" in page
    view = TokenView(ids, max_plain=3)
    assert repr(view) == f"{len(ids)} tokens: <|start|>|system|<|message|>|… (+{len(ids) - 3})"
    assert view._repr_html_() == page
    gpt2 = get_encoding("gpt2")
    split = tokens_html(gpt2.encode_ordinary("one two three"), gpt2, mode="splits")
    assert [split.count(c) for c in SPLIT_COLOURS] == [2, 1] and "control token" not in split
    with pytest.raises(ValueError, match="mode"):
        tokens_html(ids, mode="colours")


def test_explorer_controls_rerender():
    ex = harmony_explorer(effort="low", message="Hello!")
    low_ids, low_html, low_png = list(ex.ids), ex.tokens.value, ex.fingerprint()
    assert ex.ids == harmony.render_conversation([harmony.system("low"), harmony.user("Hello!")])
    assert ex.stats["tokens"] == len(ex.ids) == ex.stats["special"] + ex.stats["header"] + ex.stats["content"]
    assert ex.tokens in ex.children and ex.tokens.value.count("<span title='id ") == len(ex.ids)
    assert "Reasoning: low" in ENC.decode(ex.ids)

    ex.set(effort="high")  # one word of the system message changes, the count does not
    assert ex.fingerprint() != low_png and ex.tokens.value != low_html and "Reasoning: high" in ENC.decode(ex.ids)
    assert len(ex.ids) == len(low_ids) and sum(a != b for a, b in zip(ex.ids, low_ids)) == 1
    assert ex.figure.axes[0].get_title().startswith("Reasoning: high")

    n, png = ex.stats["tokens"], ex.fingerprint()
    ex.set(instructions="Answer in French.")
    assert ex.stats["tokens"] > n and ex.fingerprint() != png
    assert ENC.decode(ex.ids).count("<|start|>developer<|message|>") == 1
    assert ex.stats["special"] == 3 * 3 + 1  # <|start|> <|message|> <|end|> of three messages, then <|start|>
    labels = [t.get_text() for t in ex.figure.axes[0].get_yticklabels()]
    assert labels == ["system", "developer", "user", "reply starts"]
    # The bars add up to the whole prompt.
    bars = ex.figure.axes[0].patches
    assert sum(b.get_width() for b in bars) == len(ex.ids)

    before = ex.stats["content"]
    ex.set(message="Hello! " * 10)
    assert ex.stats["content"] > before
    assert repr(ex) == f"HarmonyExplorer(effort='high'; {ex.stats['tokens']} tokens)"
    with pytest.raises(KeyError, match="no control 'colour'"):
        ex.set(colour="red")


# ---- found by mutation testing: the numbers and labels behind the picture ------------------------------

def test_chips_below_the_figure_are_coloured_by_kind():
    ex = harmony_explorer(effort="low", message="Hello!")
    page = ex.tokens.value
    assert page == tokens_html(ex.ids, ENC)
    for kind in ("special", "header", "content"):
        assert f"background:{KIND_COLOURS[kind]}" in page
    assert not any(f"background:{c}" in page for c in SPLIT_COLOURS)


def test_each_bar_is_labelled_with_its_messages_token_count():
    ex = harmony_explorer(effort="medium", instructions="Be brief.", message="Hi there")
    msgs = [harmony.system("medium"), harmony.developer("Be brief."), harmony.user("Hi there")]
    want = [len(harmony.render_message(m)) for m in msgs] + [len(harmony.render_conversation([]))]
    assert [int(t.get_text()) for t in ex.figure.axes[0].texts] == want


def test_legend_counts_every_token_even_repeated_ones():
    ids = ENC.encode_ordinary("a a a a")
    assert len(set(ids)) < len(ids)
    page = tokens_html(harmony.render_message(harmony.user("a a a a")))
    n = len(harmony.render_message(harmony.user("a a a a")))
    assert f">{n} tokens &nbsp;" in page


def test_a_failed_draw_does_not_leave_the_last_prompt_s_tokens_shown(monkeypatch):
    ex = harmony_explorer(effort="low", message="Hello!")
    assert ex.tokens.value

    def fails(*args, **kwargs):
        raise RuntimeError("forced")

    monkeypatch.setattr(ex, "draw_fn", fails)
    ex.controls["message"].value = "Bonjour"  # the learner types: the picture fails, and so must the chips go
    assert "could not draw" in ex.error.value and ex.tokens.value == ""


def test_instructions_of_only_spaces_add_no_developer_message():
    ex = harmony_explorer(effort="low", instructions="  ", message="Hello!")
    assert ex.ids == harmony.render_conversation([harmony.system("low"), harmony.user("Hello!")])
    assert [t.get_text() for t in ex.figure.axes[0].get_yticklabels()] == ["system", "user", "reply starts"]


def test_a_token_view_of_exactly_max_plain_tokens_shows_them_all_with_no_more_mark():
    ids = ENC.encode_ordinary("one two three")
    texts = token_texts(ids)
    assert len(ids) == 3
    assert repr(TokenView(ids, max_plain=3)) == f"3 tokens: {'|'.join(texts)}"
    assert repr(TokenView(ids, max_plain=2)) == f"3 tokens: {'|'.join(texts[:2])}|… (+1)"


def test_the_legend_sits_below_the_bars_never_on_one_nor_on_the_axis_label():
    # A long user message runs its bar to the right edge, where the legend used to sit.
    ex = harmony_explorer()
    ex.set(instructions="Answer in one word.", message="What is the capital of Portugal? " * 30)
    fig = ex.figure
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    assert legend.y1 <= ax.xaxis.label.get_window_extent().y0  # under "tokens", so under every bar too
    assert legend.y0 >= -1  # and inside the picture (constrained layout places it to within a pixel)
