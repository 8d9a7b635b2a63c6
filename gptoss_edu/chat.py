"""A terminal chat with a gpt-oss checkpoint in the harmony format.

    python -m gptoss_edu chat --model DIR_OR_REPO --reasoning high

The model's thinking (the analysis channel) is shown dimmed and its answer plainly. The
conversation is kept between turns, with the thinking of answered turns dropped as the
harmony format prescribes. Ctrl-C stops the current reply and keeps the session; Ctrl-D
(end of input) quits; /reset starts a new conversation. When the conversation would leave a reply
less than --max-new-tokens of the context window, its oldest turns are left out, and the screen
says so. A message that runs the GPU out of memory is dropped, and the conversation goes on as
before it.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import time
from pathlib import Path
from typing import TextIO

import torch

from . import harmony
from .env import device_problem, total_ram, triton_gpu_problem
from .generate import Generation, check_chat_settings, release_memory, stream, turn_seed
from .memory import format_bytes, format_count, is_out_of_memory
from .model import GPT
from .static_decode import fast_step
from .terminal import printable
from .tokenizer import HARMONY_VOCAB_SIZE, get_encoding

DIM, RESET = "\x1b[2m", "\x1b[0m"


class ChatError(Exception):
    """Something the user can fix: a missing checkpoint, a model that cannot chat."""


def resolve_model(spec: str) -> Path:
    """A checkpoint folder, or a Hugging Face repo id downloaded (or found on disk) by gptoss_edu.hub."""
    from .hub import download

    return download(spec)


def load_chat_model(path: Path, device: str, backend: str = "torch") -> GPT:
    """Load a checkpoint that can chat in harmony (a gpt-oss vocabulary), on `device`.

    ``backend`` "auto" runs the Triton kernels when the experts are MXFP4 (what they read), else PyTorch.
    """
    from .checkpoint import load_model, read_config

    cfg, layout, raw = read_config(path)
    if cfg.vocab_size != HARMONY_VOCAB_SIZE:
        raise ChatError(
            f"{path} is a model with a {cfg.vocab_size}-token vocabulary"
            f"{' (GPT-2)' if cfg.vocab_size == 50257 else ''}: it was never trained on the harmony "
            f"chat format, which needs gpt-oss's o200k_harmony tokenizer ({HARMONY_VOCAB_SIZE} tokens). "
            "Chat with a gpt-oss checkpoint: --model data/tiny-gpt-oss (the course's, on any machine) or "
            "--model openai/gpt-oss-20b (a GPU with 16 GB)."
        )
    on_gpu = device.startswith("cuda")
    dtype = torch.bfloat16 if on_gpu else torch.float32
    # OpenAI's original/ layout always stores its experts in MXFP4, and its config.json never says so.
    quant = (raw.get("quantization_config") or {}).get("quant_method")
    packed = cfg.is_moe and (layout == "original" or quant == "mxfp4")
    if backend == "triton" and cfg.is_moe and not packed:
        raise ChatError(f"--backend triton: the experts of {path} are not in MXFP4, and the Triton kernels read "
                        "MXFP4 experts; --backend torch runs this checkpoint")
    if backend == "auto":
        backend = "triton" if packed and _kernels_run_on(device) else "torch"
        if cfg.is_moe and not packed:
            print(f"--backend auto: the experts of {path} are not in MXFP4, which the Triton kernels read; running "
                  "on the PyTorch path", file=sys.stderr)
    # MXFP4 experts stay packed on a GPU (dequantized, gpt-oss-20b would not fit 16 GB), for the Triton
    # kernels (they read the packed bytes), and on a CPU when the whole model in float32 (a bound on its
    # dense experts) would take more than a quarter of the RAM; otherwise a small model is dequantized
    # once on a CPU, where unpacking every expert at every token would be slow.
    ram = total_ram()
    keep = packed and (on_gpu or backend == "triton" or ram is None or cfg.param_counts()["total"] * 4 > ram // 4)
    model = load_model(path, device=device, dtype=dtype, keep_mxfp4=keep)
    return model.set_backend(backend)


def _kernels_run_on(device: str) -> bool:
    """Whether the Triton kernels can run a model on ``device``: kernels compiled for a GPU cannot take a CPU model."""
    try:
        from gptoss_kernels import require_triton

        require_triton(torch.device(device))
    except (ImportError, RuntimeError):
        return False
    return True


def experts_note(model: GPT) -> str:
    """How the model holds its experts, for the banner: '; experts in MXFP4', '; experts dense, 1.50 MiB' or ''."""
    from .moe import Experts

    experts = [m for m in model.modules() if isinstance(m, Experts)]
    if not experts:
        return ""
    if all(e.packed for e in experts):
        return "; experts in MXFP4"
    size = sum(t.numel() * t.element_size() for e in experts if not e.packed for t in (e.gate_up_proj, e.down_proj))
    return f"; experts dense, {format_bytes(size)}"


def chat_header(reasoning: str = "medium", date: str | None = None,
                instructions: str | None = None) -> list[harmony.Message]:
    """The messages every prompt of a chat starts with: the system message, and the developer's if instructed."""
    return [harmony.system(reasoning, date=date)] + ([harmony.developer(instructions)] if instructions else [])


def check_header_fits(context: int, reasoning: str, date: str | None, instructions: str | None) -> None:
    """ChatError if the system and developer messages leave no room for a message and a reply in ``context``."""
    shortest = harmony.render_conversation(chat_header(reasoning, date, instructions) + [harmony.user("?")],
                                           encoding=get_encoding("o200k_harmony"))
    if len(shortest) >= context:
        raise ChatError(f"--instructions is too long: with the system message and the shortest user message it "
                        f"takes {len(shortest):,} tokens, and this model's context window is {context:,}. Shorten it.")


class ChatSession:
    """A conversation with a model: the messages so far, and how to get the next reply."""

    def __init__(
        self,
        model: GPT,
        reasoning: str = "medium",
        date: str | None = None,
        instructions: str | None = None,
        max_new_tokens: int = 512,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        out: TextIO | None = None,
        color: bool | None = None,
        cuda_graph: bool | None = None,
    ) -> None:
        seed = check_chat_settings(max_new_tokens, temperature, top_p, seed)  # here: a bad one is no turn's fault
        self.model = model
        self.enc = get_encoding("o200k_harmony")
        self.header = chat_header(reasoning, date, instructions)
        self.messages: list[harmony.Message] = []
        self._before: list[harmony.Message] = []  # the conversation before the turn under way
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.seed, self.turn = seed, 0
        self.cuda_graph = cuda_graph  # None: decode steps replay a CUDA graph on a GPU (static_decode.fast_step)
        self.out = out if out is not None else sys.stdout
        if self.out is None:  # sys.stdout is None when Python starts with it closed
            raise ValueError("the chat has nowhere to write: standard output is closed, so give it a file (out=...)")
        if color is None:  # NO_COLOR (no-color.org) and a dumb terminal ask for plain text
            color = self.out.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        self.color = color
        self._dim = False  # whether the terminal is now writing dimmed text

    def reset(self) -> None:
        """Forget the conversation (the system and developer messages stay)."""
        self.messages = []

    def prompt_ids(self, messages: list[harmony.Message] | None = None) -> list[int]:
        """The conversation (or ``messages`` in its place) rendered for the model, ending with `<|start|>assistant`."""
        return harmony.render_conversation(self.header + (self.messages if messages is None else messages),
                                           encoding=self.enc)

    # ---- printing ------------------------------------------------------------------
    def _write(self, text: str, dim: bool = False) -> None:
        if self.color and dim != self._dim:
            self.out.write(DIM if dim else RESET)
            self._dim = dim
        self.out.write(text)
        self.out.flush()

    # ---- one turn --------------------------------------------------------------------
    def reply(self, text: str) -> Generation | None:
        """Send a user message, stream the reply to the screen, keep both in the conversation (None: not kept).

        A conversation that would leave the reply less than max_new_tokens (at most half the context)
        loses its oldest turns first: the model no longer sees them, and the screen says so.
        """
        self._before = self.messages  # what a failed turn puts back, the turns left out below included
        context = self.model.config.context_length
        # Nothing is kept until the message is sent: Ctrl-C while a long conversation renders leaves it as it was.
        fit = harmony.make_room([*self.messages, harmony.user(text)], self.prompt_ids, context, self.max_new_tokens)
        prompt = fit.prompt
        if fit.room <= 0:  # every earlier turn is left out by now: the message itself is too long
            header = "the system and developer messages" if len(self.header) > 1 else "the system message"
            self._write(f"(not sent: this message, with {header}, would be {len(prompt)} tokens, over this model's "
                        f"context window of {context}. Shorten it.)\n")
            return None
        self.messages = fit.kept
        if fit.left_out:
            turns = fit.left_out
            short = f"; even so the reply has room for only {fit.room} tokens" if fit.short else ""
            self._write(f"(the {'oldest turn is' if turns == 1 else f'{turns} oldest turns are'} left out to leave "
                        f"room for the reply: the model no longer sees {'it' if turns == 1 else 'them'}{short})\n",
                        dim=True)
            self._write("")
        elif fit.short:  # a first message this long: nothing earlier to leave out
            self._write(f"(the reply has room for only {fit.room} tokens of the context window)\n", dim=True)
            self._write("")
        stats = Generation()
        reader = harmony.ReplyReader(self.enc)
        tokens = stream(
            self.model, prompt, max_new_tokens=self.max_new_tokens, temperature=self.temperature,
            top_p=self.top_p, seed=turn_seed(self.seed, self.turn),
            stop_tokens=reader.stop_tokens, stats=stats, decoder=fast_step(self.cuda_graph),
        )
        self.turn += 1
        shown, line_open, interrupted, out_of_memory = None, False, False, False
        held, held_dim = "", False  # a "\r" that ends a piece: the "\n" of a Windows line end may come next
        try:
            for piece in reader.read(tokens):
                if shown != (piece.channel, piece.recipient) or piece.opens:  # a new message starts a new line
                    if line_open:
                        self._write(printable(held), dim=held_dim)
                        self._write("\n")
                        held, line_open = "", False
                    if shown != (piece.channel, piece.recipient) and not piece.answer:
                        to = f" to {printable(piece.recipient)}" if piece.recipient else ""
                        label = {"analysis": "thinking", None: "message"}.get(piece.channel, piece.channel)
                        self._write(f"[{label}{to}] ", dim=True)
                        line_open = True
                    shown = (piece.channel, piece.recipient)
                if piece.text:
                    text = held + piece.text
                    held, held_dim = ("\r" if text.endswith("\r") else ""), not piece.answer
                    self._write(printable(text[:len(text) - len(held)]), dim=held_dim)  # the model's: no escapes
                    line_open = True
        except KeyboardInterrupt:
            interrupted = True
        except RuntimeError as e:  # out of memory: the prompt grows every turn, and the cache with it
            if not is_out_of_memory(e):
                self._undo_turn()
                raise
            out_of_memory = True
        except Exception:  # the conversation as before this message, so that sending it again is one turn
            self._undo_turn()
            raise
        finally:
            tokens.close()
            if held:
                self._write(printable(held), dim=held_dim)
            self._write("")  # back to normal text, even after an interrupt
        if out_of_memory:
            return self._drop_turn(len(prompt), line_open)
        # What the caller gets back says why the reply ended: an interrupt is not the token budget running out.
        stats.stop_reason = "interrupted" if interrupted else reader.stop_reason(stats.stop_reason)
        # No answer when the budget or the context ran out (still thinking, a tool call or babble cut short): kept,
        # the message would stand unanswered and the next prompt hold two user messages in a row. Dropped, as a
        # failed turn is.
        unanswered = (not interrupted and stats.stop_reason in ("max_new_tokens", "context_full")
                      and not reader.answered())
        if unanswered:
            self._undo_turn()
        else:
            self.messages += reader.messages()
        if line_open:
            self._write("\n")
        self._report(stats, reader, interrupted, len(prompt) + len(stats.tokens) >= context, unanswered)
        return None if unanswered else stats

    def _undo_turn(self) -> None:
        """Forget the user's message just sent, its reply failed: the conversation as before it, every turn back."""
        self.messages = self._before
        self.turn -= 1

    def _drop_turn(self, prompt_tokens: int, line_open: bool) -> None:
        """After running out of memory: the conversation and the seed as before this message, the memory given back."""
        self._undo_turn()
        release_memory()
        lead = "\n" if line_open else ""
        self._write(f"{lead}(out of memory with the conversation at {prompt_tokens:,} tokens: this message and its "
                    "reply are dropped, the conversation is as before it. Send a shorter message, lower "
                    "--max-new-tokens, or /reset to start over.)\n", dim=True)
        self._write("")
        return None

    def _report(self, stats: Generation, reader: harmony.ReplyReader, interrupted: bool, context_full: bool,
                dropped: bool = False) -> None:
        notes = []
        if interrupted:
            notes.append("interrupted")
        elif reader.taken is not None:
            notes.append(f"the model went on to write a {reader.taken} message itself: cut there")
        elif dropped:
            why = "still thinking" if reader.still_thinking() else "no answer"
            if stats.stop_reason == "context_full":
                notes.append(f"{why} when the context window filled: this message is dropped, the conversation is "
                             "as before it. /reset starts over with the whole window, or run the chat with a lower "
                             "--reasoning")
            else:
                notes.append(f"{why} at --max-new-tokens {self.max_new_tokens}: this message is dropped, the "
                             "conversation is as before it. Run the chat with a larger --max-new-tokens or a lower "
                             "--reasoning")
        elif stats.stop_reason not in ("stop_token", "format_problem"):
            notes.append("the context window is full: the next message leaves out the oldest turns (/reset starts "
                         "over)" if context_full
                         else f"stopped at --max-new-tokens {self.max_new_tokens}")
        calls = reader.tool_calls()
        if calls:
            notes.append(f"the model called {', '.join(calls)}, but this chat has no tools")
        problem = reader.format_problem(cut_short=stats.cut_short)
        if problem is not None:
            raw = self.enc.decode(stats.tokens)
            notes.append(f"the reply does not follow the harmony format ({problem}); raw text: {raw!r}")
        n = len(stats.tokens)
        speed = f"{n} tokens, {stats.tokens_per_second:.1f} tokens/s" if n else "no tokens"
        prompt = f"prompt {stats.prompt_tokens} tokens in {stats.prefill_seconds:.2f} s"
        self._write(printable(f"({speed}; {prompt}{''.join('; ' + x for x in notes)})"), dim=True)  # names from the model
        self._write("\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options of `python -m gptoss_edu chat`."""
    parser.add_argument("--model", required=True,
                        help="checkpoint folder, or Hugging Face repo id (e.g. openai/gpt-oss-20b)")
    parser.add_argument("--reasoning", default="medium", choices=harmony.REASONING_EFFORTS,
                        help="reasoning effort written in the system message (default: medium)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ..., mps (default: auto, cuda if available, else cpu)")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "triton"),
                        help="run the hot ops in PyTorch or in the course's Triton kernels (default: auto, the "
                             "Triton kernels on a GPU that can compile them when the experts are MXFP4, PyTorch elsewhere)")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="longest reply in tokens (default: 512)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="0 = greedy (default: 1.0, as the gpt-oss README advises)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default: 1.0)")
    parser.add_argument("--seed", type=int, default=None, help="make sampling reproducible")
    parser.add_argument("--date", default=None, help="current date for the system message: YYYY-MM-DD or 'today'")
    parser.add_argument("--instructions", default=None, help="developer instructions (the 'system prompt')")
    parser.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false", default=None,
                        help="on a GPU, launch each decode step's kernels from Python instead of replaying "
                             "them as one CUDA graph (slower; for comparing)")


def _check_arguments(args: argparse.Namespace) -> None:
    if args.max_new_tokens < 1:
        raise ChatError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if not 0 <= args.temperature < math.inf:  # NaN fails this too
        raise ChatError(f"--temperature must be a number >= 0, got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise ChatError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise ChatError(f"--seed must be in 0 .. 2**63 - 1, got {args.seed}")
    if args.date == "today":
        args.date = datetime.date.today().isoformat()
    elif args.date is not None:
        try:  # Python 3.11 also reads 20250102 and 2025-W01-1, which would go into the prompt as typed
            if datetime.date.fromisoformat(args.date).isoformat() != args.date:
                raise ValueError
        except ValueError:
            raise ChatError(f"--date must be YYYY-MM-DD or 'today', got {args.date!r}") from None
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    try:  # before the model is fetched: a typo must not cost a 12.8 GiB download first
        torch.device(args.device)
    except RuntimeError:
        raise ChatError(f"--device {args.device!r} is not a device: use auto, cpu, cuda, cuda:N or mps") from None
    problem = device_problem(torch.device(args.device))
    if problem:  # "no ... GPU": none of that kind at all, so the CPU is the way on
        raise ChatError(f"--device {args.device}: {problem}" + ("; use --device cpu" if problem.startswith("no ") else ""))
    if args.backend == "auto" and not _triton_runs_well(args.device):
        args.backend = "torch"
    if args.backend == "triton":
        from gptoss_kernels import interpreter_mode, triton_available
        from gptoss_kernels._common import INSTALL_TRITON

        if not triton_available():
            raise ChatError(f"--backend triton needs Triton, which is not installed. {INSTALL_TRITON}, or use "
                            "--backend torch, which runs anywhere")
        if not args.device.startswith("cuda") and not interpreter_mode():
            raise ChatError("--backend triton on the CPU needs TRITON_INTERPRET=1 in the environment (Triton's "
                            "interpreter: slow, for checking); --backend torch runs anywhere")
        problem = triton_gpu_problem(torch.device(args.device)) if args.device.startswith("cuda") else None
        if problem:
            raise ChatError(f"--backend triton: {problem}. --backend torch runs on this GPU")


def _triton_runs_well(device: str) -> bool:
    """Whether --backend auto may run the Triton kernels: compiled, on a GPU that takes them (as notebook 12)."""
    if not device.startswith("cuda"):
        return False  # the interpreter is far too slow to chat with
    from gptoss_kernels import interpreter_mode, triton_available

    why = ("Triton is not installed" if not triton_available()
           else "TRITON_INTERPRET is set (it is for the CPU tests), so the kernels would run in Triton's interpreter"
           if interpreter_mode() else triton_gpu_problem(torch.device(device)))
    if why:
        print(f"--backend auto: {why}; running on the PyTorch path (slower: it unpacks the chosen experts "
              "at every token)", file=sys.stderr)
    return not why


def read_line(prompt: str) -> str:
    """One line of user input; a prompt only when someone is typing at a terminal."""
    if sys.stdin is None:  # started with standard input closed: nothing more will come
        raise EOFError
    if sys.stdin.isatty():
        return input(prompt)
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\r\n")


def run(args: argparse.Namespace) -> int:
    """The chat loop; returns the exit status."""
    try:
        _check_arguments(args)
        closed = [name for name in ("stdin", "stdout") if getattr(sys, name) is None]
        if closed:  # found before the model loads, which takes minutes for gpt-oss-20b
            verb = "is" if len(closed) == 1 else "are"
            raise ChatError(f"the chat reads your messages from standard input and writes its replies to standard "
                            f"output, and {' and '.join(closed)} {verb} closed: run it at a terminal, or pipe messages "
                            "in (echo 'Hello' | python -m gptoss_edu chat ...)")
        path = resolve_model(args.model)
        t0 = time.perf_counter()
        model = load_chat_model(path, args.device, args.backend)
        args.backend = getattr(model, "backend", args.backend)  # what "auto" chose
        # Said once, here: otherwise every message would be refused, and /reset would not help.
        check_header_fits(model.config.context_length, args.reasoning, args.date, args.instructions)
    except (ChatError, ValueError, OSError, RuntimeError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")  # model text must never crash a narrow terminal
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="replace")  # nor bytes that are not UTF-8 end the conversation
    session = ChatSession(
        model, args.reasoning, args.date, args.instructions, args.max_new_tokens,
        args.temperature, args.top_p, args.seed, cuda_graph=args.cuda_graph,
    )
    print(f"{model.config.name}: {format_count(model.num_parameters())} parameters on {args.device} "
          f"({args.backend} backend{experts_note(model)}), "
          f"loaded in {time.perf_counter() - t0:.1f} s; reasoning {args.reasoning}.")
    print("Ctrl-C stops a reply, Ctrl-D quits, /reset starts a new conversation.")
    while True:
        try:
            text = read_line(">>> ")
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            print("\n(Ctrl-D quits)")
            continue
        if text.strip() == "/reset":
            session.reset()
            print("(new conversation)")
            continue
        if not text.strip():
            continue
        try:
            session.reply(text)
        except KeyboardInterrupt:  # landed outside the token loop (rendering, printing)
            print("\n(interrupted)")
