"""Tokenizers of the course: GPT-2's BPE and gpt-oss's o200k_harmony, offline.

Both are plain `tiktoken.Encoding` objects built from the BPE rank files shipped in the
repository's `data/` folder, so nothing here touches the network. (tiktoken's own
`get_encoding("gpt2")` always downloads its files.) Every file is checked against the
SHA-256 that tiktoken itself expects for it, so a damaged or truncated file is refused.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the environment check finds data/ without tiktoken
    import tiktoken

DATA_ENV_VAR = "GPTOSS_EDU_DATA"
DATA_CONTENTS = "the two .tiktoken files, corpus/ and tiny-gpt-oss/"

# The SHA-256 of each rank file, as in tiktoken_ext/openai_public.py.
BPE_FILES = {
    "r50k_base.tiktoken": "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
    "o200k_base.tiktoken": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

# How raw text is split into words before BPE merges them (tiktoken_ext/openai_public.py).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

GPT2_VOCAB_SIZE = 50257
HARMONY_VOCAB_SIZE = 201088

# The special tokens of the harmony format, at their ids in gpt-oss's vocabulary.
HARMONY_SPECIAL_TOKENS = {
    "<|startoftext|>": 199998,
    "<|endoftext|>": 199999,
    "<|return|>": 200002,
    "<|constrain|>": 200003,
    "<|channel|>": 200005,
    "<|start|>": 200006,
    "<|end|>": 200007,
    "<|message|>": 200008,
    "<|call|>": 200012,
    "<|endofprompt|>": 200018,
}


def data_dir() -> Path:
    """The folder holding the course's data files (env GPTOSS_EDU_DATA, else the repo's data/)."""
    candidates = []
    if os.environ.get(DATA_ENV_VAR):
        chosen = Path(os.environ[DATA_ENV_VAR]).expanduser()
        if not chosen.is_dir():  # not passed over in silence for data/: the learner asked for this folder
            raise FileNotFoundError(f"{DATA_ENV_VAR} is set to {os.environ[DATA_ENV_VAR]}, which is not a folder: "
                                    f"point it at a copy of the repository's data/ ({DATA_CONTENTS}), or unset it")
        candidates.append(chosen)
    # The repository keeps data/ beside the package folder (an editable install).
    candidates.append(Path(__file__).resolve().parent.parent / "data")
    for path in candidates:
        if path.is_dir():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(
        f"cannot find the course's data folder (looked in: {looked}). Run from a clone of the "
        f"repository (pip install -e .), or set {DATA_ENV_VAR} to a copy of the repository's data/ "
        f"({DATA_CONTENTS})."
    )


def sentence(words: str) -> str:
    """``words`` as a sentence: a capital first letter (the rest as it is: names keep their case) and a full stop."""
    return f"{words[:1].upper()}{words[1:]}."


def restore_advice(what: str = "it") -> str:
    """How to put back a missing or damaged data file: from the repository, or where GPTOSS_EDU_DATA points."""
    chosen = os.environ.get(DATA_ENV_VAR)
    if chosen:  # the repository's data/ is not where the file was looked for
        return f"{DATA_ENV_VAR}={chosen} chose this folder: copy the repository's data/ into it, or unset {DATA_ENV_VAR}"
    return f"restore {what} from the repository (git checkout -- data/)"


def check_bpe_file(filename: str) -> Path:
    """The path of one shipped BPE rank file, checked: present, and with the SHA-256 tiktoken expects."""
    return _read_bpe_file(filename)[0]


def _read_bpe_file(filename: str) -> tuple[Path, bytes]:
    if filename not in BPE_FILES:
        raise ValueError(f"unknown BPE file {filename!r}; known: {sorted(BPE_FILES)}")
    path = data_dir() / filename
    if not path.is_file():
        raise FileNotFoundError(f"missing tokenizer file {path}; {restore_advice()}")
    data = path.read_bytes()
    expected = BPE_FILES[filename]
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        from .files import crlf_hint

        raise ValueError(
            f"tokenizer file {path} is damaged: its sha256 is {actual}, expected {expected}."
            + (crlf_hint(data) or f" {sentence(restore_advice())}")
        )
    return path, data


def load_bpe_ranks(filename: str) -> dict[bytes, int]:
    """One shipped BPE rank file as tiktoken's ranks, refusing it unless its hash is right."""
    # Parsed here, not by tiktoken.load: before tiktoken 0.12 its loader needs blobfile for a local
    # path, and every version copies the file into a cache it may later serve instead of the file.
    # A line is a token in base64 and its rank.
    ranks = {}
    for line in _read_bpe_file(filename)[1].splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def harmony_special_tokens() -> dict[str, int]:
    """All 1,090 special tokens of o200k_harmony: the named ones, the rest <|reserved_ID|>."""
    first_special = min(HARMONY_SPECIAL_TOKENS.values())
    named_ids = set(HARMONY_SPECIAL_TOKENS.values())
    reserved = {
        f"<|reserved_{i}|>": i
        for i in range(first_special, HARMONY_VOCAB_SIZE)
        if i not in named_ids
    }
    return {**HARMONY_SPECIAL_TOKENS, **reserved}


def _build_gpt2() -> tiktoken.Encoding:
    import tiktoken

    ranks = load_bpe_ranks("r50k_base.tiktoken")
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
        explicit_n_vocab=GPT2_VOCAB_SIZE,
    )


def _build_o200k_harmony() -> tiktoken.Encoding:
    import tiktoken

    ranks = load_bpe_ranks("o200k_base.tiktoken")
    return tiktoken.Encoding(
        name="o200k_harmony",
        pat_str=O200K_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=harmony_special_tokens(),
        explicit_n_vocab=HARMONY_VOCAB_SIZE,
    )


ENCODINGS = {"gpt2": _build_gpt2, "o200k_harmony": _build_o200k_harmony}


@functools.lru_cache(maxsize=None)
def get_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding "gpt2" or "o200k_harmony", built offline from data/."""
    if name not in ENCODINGS:
        raise ValueError(f"unknown encoding {name!r}; choose one of {sorted(ENCODINGS)}")
    return ENCODINGS[name]()


def encoding_for_vocab(vocab_size: int) -> tiktoken.Encoding:
    """The encoding a model with this vocabulary size was trained with."""
    if vocab_size == GPT2_VOCAB_SIZE:
        return get_encoding("gpt2")
    if vocab_size == HARMONY_VOCAB_SIZE:
        return get_encoding("o200k_harmony")
    raise ValueError(
        f"no tokenizer for vocab_size {vocab_size}: the course knows gpt2 ({GPT2_VOCAB_SIZE}) "
        f"and o200k_harmony ({HARMONY_VOCAB_SIZE})"
    )
