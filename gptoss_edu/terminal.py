"""Text that came from a model or a notebook, made safe to print on a terminal."""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, and C1 controls: ESC and CSI begin the sequences that clear the
# screen, retitle the window or write the clipboard (OSC 52), and a carriage return overwrites a line.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with its control characters shown as ``\\xNN``, so that printing it cannot drive the terminal."""
    # A Windows line end is a line end (o200k has it as one token): only a lone carriage return is shown.
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text.replace("\r\n", "\n"))
