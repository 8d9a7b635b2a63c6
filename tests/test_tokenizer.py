"""The offline tokenizers against tiktoken's own encodings and openai-harmony's vocabulary."""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil

import pytest
import openai_harmony
import tiktoken
import tiktoken_ext.openai_public as openai_public

from gptoss_edu import tokenizer
from gptoss_edu.tokenizer import get_encoding

DATA = tokenizer.data_dir()

# The URLs tiktoken downloads from; its cache is keyed by the SHA-1 of the URL.
URLS = {
    "r50k_base.tiktoken": "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken",
    "o200k_base.tiktoken": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}

TEXTS = [
    "Hello, world! This is GPT-2 and gpt-oss.",
    "  leading spaces, trailing spaces   \n\n\ttabs\r\nCRLF",
    "I'm sure they'll've done it; DON'T SHOUT, it's 3.14159 or 1234567 items",
    "Größe, naïve café — 日本語のテキスト, 中文, русский текст, العربية, हिन्दी 🙂🚀👩‍👩‍👧",
    "def f(x):\n    return x**2  # comment\n\nprint(f(12))",
    "<|endoftext|> and <|start|> typed as plain text",
    "",
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """tiktoken's own r50k_base and o200k_harmony, served from a cache that holds our files."""
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    for name, url in URLS.items():
        shutil.copy(DATA / name, cache / hashlib.sha1(url.encode()).hexdigest())
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    try:
        # Built from the constructors directly: tiktoken.get_encoding would memoise them globally.
        refs = {
            "gpt2": tiktoken.Encoding(**openai_public.r50k_base()),
            "o200k_harmony": tiktoken.Encoding(**openai_public.o200k_harmony()),
        }
    finally:
        if old is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = old
    return refs


@pytest.fixture(scope="module")
def harmony_encoding():
    """openai-harmony's gpt-oss encoding, loaded offline from data/ (test dependency only)."""
    old = os.environ.get("TIKTOKEN_ENCODINGS_BASE")
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(DATA)
    try:
        return openai_harmony.load_harmony_encoding(openai_harmony.HarmonyEncodingName.HARMONY_GPT_OSS)
    finally:
        if old is None:
            del os.environ["TIKTOKEN_ENCODINGS_BASE"]
        else:
            os.environ["TIKTOKEN_ENCODINGS_BASE"] = old


def random_text(rng: random.Random, n: int) -> str:
    """Text drawn from a mix of scripts, digits, punctuation and whitespace."""
    pools = ["abcXYZ ", "0123456789", " \n\t", ".,;:'!?-_/\\\"()[]{}<|>", "éüßñ", "日本語中文", "🙂🚀"]
    return "".join(rng.choice(rng.choice(pools)) for _ in range(n))


@pytest.mark.parametrize("name", ["gpt2", "o200k_harmony"])
def test_matches_tiktoken_reference(name, reference):
    ours, ref = get_encoding(name), reference[name]
    assert ours._pat_str == ref._pat_str
    assert ours._mergeable_ranks == ref._mergeable_ranks
    rng = random.Random(0)
    texts = TEXTS + [random_text(rng, rng.randint(1, 200)) for _ in range(50)]
    for text in texts:
        ids = ours.encode(text, disallowed_special=())
        assert ids == ref.encode(text, disallowed_special=()), text
        assert ours.decode(ids) == text


def test_gpt2_vocabulary():
    enc = get_encoding("gpt2")
    assert enc.n_vocab == 50257
    assert enc.eot_token == 50256
    assert enc.special_tokens_set == {"<|endoftext|>"}
    # Known GPT-2 ids (the byte-level BPE of the 2019 release).
    assert enc.encode("Hello world") == [15496, 995]
    assert enc.encode("<|endoftext|>", allowed_special="all") == [50256]


def test_harmony_special_tokens_match_tiktoken(reference):
    ours = get_encoding("o200k_harmony")
    ref = reference["o200k_harmony"]
    assert ours.n_vocab == 201088 and ours.max_token_value == 201087
    named = {
        "<|startoftext|>": 199998, "<|endoftext|>": 199999, "<|return|>": 200002,
        "<|constrain|>": 200003, "<|channel|>": 200005, "<|start|>": 200006, "<|end|>": 200007,
        "<|message|>": 200008, "<|call|>": 200012, "<|endofprompt|>": 200018,
    }
    for text, token in named.items():
        assert ours.encode_single_token(text) == token
        assert ours.decode([token]) == text
    # tiktoken names 200018 twice (<|endofprompt|> and <|reserved_200018|>); we keep one name
    # per id so that decoding is unambiguous. Every other name and id is the same.
    ref_specials = dict(ref._special_tokens)
    del ref_specials["<|reserved_200018|>"]
    assert ours._special_tokens == ref_specials
    assert len(ours._special_tokens) == 201088 - 199998
    assert len(set(ours._special_tokens.values())) == len(ours._special_tokens)


def test_harmony_special_tokens_match_openai_harmony(harmony_encoding):
    ours = get_encoding("o200k_harmony")
    theirs = harmony_encoding.special_tokens_set
    # openai-harmony 0.0.8 also lists <|reserved_201088|> (id 201088, outside the model's
    # 201,088-row vocabulary) and calls 200018 <|reserved_200018|> instead of <|endofprompt|>.
    assert ours.special_tokens_set == (theirs - {"<|reserved_201088|>", "<|reserved_200018|>"}) | {
        "<|endofprompt|>"
    }
    for text in ours.special_tokens_set - {"<|endofprompt|>"}:
        assert harmony_encoding.encode(text, allowed_special="all") == [ours.encode_single_token(text)]
    for text in TEXTS:
        assert ours.encode(text, disallowed_special=()) == harmony_encoding.encode(text, disallowed_special=())


def test_typed_special_tokens_stay_text():
    enc = get_encoding("o200k_harmony")
    ids = enc.encode("<|start|>assistant<|end|>", disallowed_special=())
    assert all(i < 199998 for i in ids)
    with pytest.raises(ValueError, match="disallowed special token"):
        enc.encode("<|start|>")


def test_unknown_encoding():
    with pytest.raises(ValueError, match="unknown encoding 'cl100k_base'"):
        get_encoding("cl100k_base")


def test_encoding_for_vocab():
    assert tokenizer.encoding_for_vocab(50257).name == "gpt2"
    assert tokenizer.encoding_for_vocab(201088).name == "o200k_harmony"
    with pytest.raises(ValueError, match="no tokenizer for vocab_size 1000"):
        tokenizer.encoding_for_vocab(1000)


def test_damaged_file_is_refused(tmp_path, monkeypatch):
    for name in tokenizer.BPE_FILES:
        shutil.copy(DATA / name, tmp_path / name)
    monkeypatch.setenv(tokenizer.DATA_ENV_VAR, str(tmp_path))
    assert len(tokenizer.load_bpe_ranks("r50k_base.tiktoken")) == 50256  # intact copy loads
    data = (tmp_path / "r50k_base.tiktoken").read_bytes()
    (tmp_path / "r50k_base.tiktoken").write_bytes(data[:-100])  # truncated
    with pytest.raises(ValueError, match="is damaged"):
        tokenizer.load_bpe_ranks("r50k_base.tiktoken")
    flipped = bytearray(data)
    flipped[1000] ^= 1
    (tmp_path / "r50k_base.tiktoken").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="is damaged"):
        tokenizer.load_bpe_ranks("r50k_base.tiktoken")
    # Git for Windows' checkout (core.autocrlf) gives every line CRLF: said as such, with what brings the file back.
    (tmp_path / "r50k_base.tiktoken").write_bytes(data.replace(b"\n", b"\r\n"))
    with pytest.raises(ValueError, match=r"is damaged.*Its lines end in CRLF.*Delete the file, then run `git checkout"):
        tokenizer.load_bpe_ranks("r50k_base.tiktoken")
    (tmp_path / "o200k_base.tiktoken").unlink()
    with pytest.raises(FileNotFoundError, match="missing tokenizer file"):
        tokenizer.load_bpe_ranks("o200k_base.tiktoken")


def test_missing_data_dir_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv(tokenizer.DATA_ENV_VAR, raising=False)
    monkeypatch.setattr(tokenizer, "__file__", str(tmp_path / "pkg" / "tokenizer.py"))
    with pytest.raises(FileNotFoundError, match=r"looked in: [^,]*/data\). .*GPTOSS_EDU_DATA to a copy of the "
                                                r"repository's data/ \(the two .tiktoken files, corpus/ and tiny"):
        tokenizer.data_dir()


def test_a_data_folder_asked_for_is_named_where_it_is_wrong(tmp_path, monkeypatch):
    """GPTOSS_EDU_DATA set to no folder was passed over in silence; set to a wrong one, "restore it from the
    repository (git checkout -- data/)" pointed at a folder the files were not looked for in."""
    from gptoss_edu.corpus import CorpusError, load_corpus

    monkeypatch.setenv(tokenizer.DATA_ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"GPTOSS_EDU_DATA is set to .*nowhere, which is not a folder: point "
                                                r"it at a copy of the repository's data/ .*or unset it"):
        tokenizer.data_dir()
    monkeypatch.setenv(tokenizer.DATA_ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"GPTOSS_EDU_DATA={re.escape(str(tmp_path))} chose this folder: "
                                                "copy the repository's data/ into it, or unset GPTOSS_EDU_DATA"):
        tokenizer.load_bpe_ranks("r50k_base.tiktoken")
    with pytest.raises(CorpusError, match="missing corpus file .*GPTOSS_EDU_DATA=.* chose this folder"):
        load_corpus()
    monkeypatch.delenv(tokenizer.DATA_ENV_VAR)
    assert "git checkout -- data/" in tokenizer.restore_advice()


@pytest.mark.parametrize("name", sorted(tokenizer.BPE_FILES))
def test_bpe_ranks_are_tiktokens_own_and_nothing_is_cached(name, tmp_path, monkeypatch):
    # The course parses the files itself: tiktoken's loader, the reference here, copies each file
    # into its cache (and before tiktoken 0.12 needed blobfile to read a local path at all).
    from tiktoken.load import load_tiktoken_bpe

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    ours = tokenizer.load_bpe_ranks(name)
    assert not (tmp_path / "cache").exists()
    assert ours == load_tiktoken_bpe(str(DATA / name), expected_hash=tokenizer.BPE_FILES[name])
    assert sorted(ours.values()) == list(range(len(ours)))  # every rank once, none skipped
