"""Text that came from a model or a notebook, made safe to print on a terminal."""

from __future__ import annotations

import re

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
