"""Command line of the course: `python -m gptoss_edu COMMAND ...` (also `gptoss-edu COMMAND`).

Each command is a module with `add_arguments(parser)` and `run(args) -> exit status`;
adding one is a line in COMMANDS. Every command exits with the same statuses, so a script (a
teacher's, say) can tell a "no" from a failure:

- 0: done; for a check, everything passed;
- 1: done, and the answer is no: `doctor` found a FAIL, `progress` an exercise not yet right,
  `download --dry-run` a download that does not fit;
- 2: not done: the command line, a file, the network or the machine did not allow it, and the
  message on stderr says why (argparse too exits with 2 for a bad command line);
- 130: interrupted (Ctrl-C); 141: the reader of the output went away (`... | head`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .terminal import reader_gone

# command name -> (module holding add_arguments and run, one-line help)
COMMANDS = {
    "doctor": ("gptoss_edu.env", "check what this machine can run of the course"),
    "download": ("gptoss_edu.hub", "download gpt-oss weights from the Hugging Face Hub (disk checked first)"),
    "chat": ("gptoss_edu.chat", "chat with a gpt-oss checkpoint in the harmony format"),
    "train": ("gptoss_edu.train", "train a small model of the course on the shipped corpus"),
    "student": ("gptoss_edu.student", "copy the notebooks without their solutions, for a class"),
    "progress": ("gptoss_edu.progress", "which exercises pass: one learner's notebooks, or a table of a class's"),
}


class MissingPackage(Exception):
    """A command's module needs a package this Python does not have."""


def build_parser(only: str | None = None, *, load: bool = True) -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per command; only ``only``'s module is imported, if given.

    With ``load=False`` no command's module is imported: enough for `--help` and for naming a command.
    """
    # Importing every command would import torch, tiktoken and the rest, and `doctor` must be able
    # to say which of them is missing.
    # As it was called: the console script, or the module (whose argv[0] is __main__.py's path).
    prog = "gptoss-edu" if os.path.basename(sys.argv[0]) == "gptoss-edu" else "python -m gptoss_edu"
    parser = argparse.ArgumentParser(prog=prog, description="From GPT-2 to gpt-oss: course tools.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        parser_of = sub.add_parser(name, help=help_text, description=help_text)
        parser_of.set_defaults(command_parser=parser_of)  # to refuse an unknown option with this command's usage
        if load and only in (None, name):
            module = _import_command(name, module_name)
            module.add_arguments(parser_of)
            parser_of.set_defaults(run=module.run)
    return parser


def _import_command(name: str, module_name: str):
    """The command's module, or MissingPackage naming what this Python lacks and where to get it."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise _missing_package(name, err) from None


def _missing_package(command: str, err: ModuleNotFoundError) -> MissingPackage:
    """MissingPackage for a third-party package; ``err`` itself again for a module of the course."""
    missing = (err.name or "").split(".")[0]
    if not missing or missing in ("gptoss_edu", "gptoss_kernels"):
        raise err
    return MissingPackage(
        f"`python -m gptoss_edu {command}` needs {missing}, which this Python ({sys.executable}) does not have. "
        "Run the command with the course's environment (`make venv` makes it; then "
        f"`.venv/bin/python -m gptoss_edu {command} ...`), or run `python -m gptoss_edu doctor` "
        "to see what is missing and how to install it.")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(command, load=command in COMMANDS)
    except MissingPackage as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while torch and the rest are still importing
        print(file=sys.stderr)
        return 130
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said with the command's usage (the top level's lists only the commands), unless given before it
        before = argv[:argv.index(args.command)] if args.command in argv else []
        (parser if set(unknown) & set(before) else args.command_parser).error(
            f"unrecognized arguments: {' '.join(unknown)}")
    args.argv = argv[1:]  # the command's own arguments, for commands that record how they were run
    for stream in (sys.stdout, sys.stderr):
        # A console that cannot show a character (a CJK folder name, a mark, in cp1252 or a Latin-1 locale)
        # gets it as \uNNNN rather than a traceback after the work is done.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        return args.run(args)
    except ModuleNotFoundError as err:  # a package a command imports only when it needs it
        print(f"error: {_missing_package(args.command, err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:  # `... | head`: the reader has gone, which is no error of ours
        return reader_gone()


if __name__ == "__main__":
    sys.exit(main())
