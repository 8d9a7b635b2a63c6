"""Text that came from a model or a notebook, made safe to print on a terminal; a reader that has gone."""

from __future__ import annotations

import os
import re
import sys

# A command whose reader went away (`... | head`) ends with this status, as if SIGPIPE had ended it.
READER_GONE = 141

# C0 controls but tab and newline, DEL, and C1 controls: ESC and CSI begin the sequences that clear the
# screen, retitle the window or write the clipboard (OSC 52), and a carriage return overwrites a line.
# Also the bidirectional overrides and isolates, which make text read in another order than it is
# (U+202E turns "txt.exe" around), and the line and paragraph separators, which a terminal may not show.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` with its control characters shown as ``\\xNN`` or ``\\uNNNN``: printing it cannot drive the terminal."""
    # A Windows line end is a line end (o200k has it as one token): only a lone carriage return is shown.
    return _CONTROL.sub(_escaped, text.replace("\r\n", "\n"))


def _escaped(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def reader_gone() -> int:
    """After a BrokenPipeError on stdout (`... | head`): stdout pointed at nothing, so Python's flush at exit is
    quiet too; the exit status to return."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return READER_GONE
