"""The harmony chat format of gpt-oss, in plain Python: build, render, parse, stream.

A conversation is a list of messages. Each renders as

    <|start|>{role}[ to={recipient}][<|channel|>{channel}][ {content_type}]<|message|>{content}<|end|>

where the bracketed parts are optional and an assistant message addressed to a tool ends
with <|call|> instead of <|end|>. To ask the model for a reply we render the conversation
and append `<|start|>assistant`; the model writes the rest of the header (its channel:
analysis for thinking, commentary for tool calls, final for the answer) and stops on
<|return|> (answer done) or <|call|> (a tool call). The chats also end a reply at <|endoftext|>,
which is no harmony token but is one of the eos ids in gpt-oss's generation_config.json.

The text pieces between special tokens are tokenized one piece at a time, exactly as
OpenAI's openai-harmony renderer does, so the token ids here match it token for token.
"""

from __future__ import annotations

import bisect
import codecs
import decimal
import json
import math
import operator
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import tiktoken

from .tokenizer import get_encoding

ROLES = ("system", "developer", "user", "assistant", "tool")
CHANNELS = ("analysis", "commentary", "final")
REASONING_EFFORTS = ("low", "medium", "high")
MODEL_IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."
KNOWLEDGE_CUTOFF = "2024-06"

START, END, MESSAGE, CHANNEL = "<|start|>", "<|end|>", "<|message|>", "<|channel|>"
RETURN, CALL, CONSTRAIN = "<|return|>", "<|call|>", "<|constrain|>"
END_OF_TEXT = "<|endoftext|>"


class HarmonyError(ValueError):
    """A conversation or a token stream that does not follow the harmony format."""


# --------------------------------------------------------------------------------------
# Building a conversation
# --------------------------------------------------------------------------------------


@dataclass
class Tool:
    """A function the model may call; `parameters` is a JSON schema of its argument."""

    name: str
    description: str
    parameters: dict[str, Any] | None = None


@dataclass
class ToolNamespace:
    """A group of tools addressed as `{namespace}.{tool}` (e.g. functions.get_weather)."""

    name: str
    tools: list[Tool] = field(default_factory=list)
    description: str | None = None


@dataclass
class SystemContent:
    """What the system message says: who the model is, dates, reasoning effort, built-in tools."""

    reasoning: str = "medium"
    date: str | None = None
    knowledge_cutoff: str | None = KNOWLEDGE_CUTOFF
    model_identity: str | None = MODEL_IDENTITY
    channels: tuple[str, ...] = CHANNELS
    tools: list[ToolNamespace] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.reasoning not in REASONING_EFFORTS:
            raise HarmonyError(
                f"unknown reasoning effort {self.reasoning!r}; choose one of "
                f"{', '.join(REASONING_EFFORTS)}"
            )
        names = [ns.name for ns in self.tools]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # openai-harmony keys them by name: it would keep only the last, and render other tokens
            raise HarmonyError(f"two tool namespaces named {', '.join(map(repr, twice))}: give each its own name, "
                               "or put their tools in one")


@dataclass
class DeveloperContent:
    """What the developer message says: instructions and the functions the model may call."""

    instructions: str | None = None
    tools: list[Tool] = field(default_factory=list)


@dataclass
class Message:
    """One message. A tool's reply has role "tool" and the tool's name as `name`."""

    role: str
    content: str | SystemContent | DeveloperContent
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.content, (str, SystemContent, DeveloperContent)):
            raise HarmonyError(f"a message's content is text (or SystemContent, DeveloperContent), got "
                               f"{self.content!r} ({type(self.content).__name__}): str(...) makes text of it")
        if self.role not in ROLES:
            raise HarmonyError(f"unknown role {self.role!r}; choose one of {', '.join(ROLES)}")
        if self.channel is not None and self.channel not in CHANNELS:
            raise HarmonyError(
                f"unknown channel {self.channel!r}; choose one of {', '.join(CHANNELS)}"
            )
        if isinstance(self.content, SystemContent) and self.role != "system":
            raise HarmonyError(f"SystemContent belongs in a system message, not {self.role}")
        if isinstance(self.content, DeveloperContent) and self.role != "developer":
            raise HarmonyError(f"DeveloperContent belongs in a developer message, not {self.role}")
        if self.role == "tool" and not self.name:
            raise HarmonyError("a tool message needs the tool's name, e.g. name='functions.f'")

    @property
    def text(self) -> str:
        """The content as text (system and developer contents as the model sees them)."""
        if isinstance(self.content, SystemContent):
            return system_text(self.content)
        if isinstance(self.content, DeveloperContent):
            return developer_text(self.content)
        return self.content


def system(
    reasoning: str = "medium",
    date: str | None = None,
    tools: Iterable[ToolNamespace] = (),
    knowledge_cutoff: str | None = KNOWLEDGE_CUTOFF,
    model_identity: str | None = MODEL_IDENTITY,
) -> Message:
    """The system message: identity, knowledge cutoff, date, reasoning effort, built-in tools."""
    content = SystemContent(
        reasoning=reasoning,
        date=date,
        knowledge_cutoff=knowledge_cutoff,
        model_identity=model_identity,
        tools=list(tools),
    )
    return Message("system", content)


def developer(instructions: str | None = None, tools: Iterable[Tool] = ()) -> Message:
    """The developer message: instructions (what a system prompt is elsewhere) and functions."""
    return Message("developer", DeveloperContent(instructions, list(tools)))


def user(text: str) -> Message:
    """A user message."""
    return Message("user", text)


def assistant(
    text: str,
    channel: str = "final",
    recipient: str | None = None,
    content_type: str | None = None,
) -> Message:
    """An assistant message on a channel; with a recipient it is a tool call."""
    return Message("assistant", text, channel, recipient, content_type)


def tool_result(name: str, text: str, channel: str = "commentary") -> Message:
    """A tool's reply to the assistant, e.g. tool_result("functions.get_weather", '{...}')."""
    return Message("tool", text, channel, recipient="assistant", name=name)


# --------------------------------------------------------------------------------------
# System and developer text
# --------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    """Split like Rust's str::lines (the renderer's): on \\n or \\r\\n, no final empty line; a lone \\r stays."""
    *ended, last = text.split("\n")
    return [p[:-1] if p.endswith("\r") else p for p in ended] + ([last] if last else [])


def _json(value: Any) -> str:
    """A JSON value written compactly, the way serde_json displays it (its numbers, its key order)."""
    if isinstance(value, float) and math.isfinite(value):
        return _float_json(value)
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**64:
        return _float_json(float(value))  # past i64 and u64 serde_json holds a whole number as an f64
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json(str(k))}:{_json(v)}" for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=False)


def _float_json(x: float) -> str:
    """A float as serde_json writes it: the shortest round-trip digits (as repr), ryu's choice of notation."""
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    sign = "-" if x < 0 else ""
    _, digit_tuple, k = decimal.Decimal(repr(abs(x))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    n = len(digits) + k  # the value is 0.<digits> x 10^n
    if 0 <= k and n <= 16:  # 1234e7 -> 12340000000.0
        text = digits + "0" * k + ".0"
    elif 0 < n <= 16:  # 1234e-2 -> 12.34
        text = digits[:n] + "." + digits[n:]
    elif -5 < n <= 0:  # 1234e-6 -> 0.001234
        text = "0." + "0" * -n + digits
    else:  # 1e30, 1234e30 -> 1.234e33: no "+" and no leading zeros in the exponent
        text = digits[0] + ("." + digits[1:] if len(digits) > 1 else "") + f"e{n - 1}"
    return sign + text


def _default_comment(schema: dict, unquote_enum: bool) -> str:
    """The `default: ...` note for a schema's default value."""
    default = schema["default"]
    if isinstance(default, str) and not schema.get("enum"):
        return f'default: "{default}"'
    if isinstance(default, str) and unquote_enum:
        return f"default: {default}"
    return f"default: {_json(default)}"


def _nullable(schema: dict, type_str: str) -> str:
    if schema.get("nullable") is True and "null" not in type_str:
        return type_str + " | null"
    return type_str


def schema_to_typescript(schema: dict, indent: str = "") -> str:
    """A JSON schema written as the TypeScript-like type the model was trained to read."""
    if not isinstance(schema, dict):  # a boolean schema (true: anything), or tuple-form items
        schema = {}
    if isinstance(schema.get("oneOf"), list):
        out = ""
        for variant in schema["oneOf"]:
            variant = variant if isinstance(variant, dict) else {}
            out += f"\n{indent} | " + _nullable(variant, schema_to_typescript(variant, indent + "   "))
            notes = [variant["description"]] if isinstance(variant.get("description"), str) else []
            if "default" in variant:
                notes.append(_default_comment(variant, unquote_enum=False))
            if notes:
                out += " // " + " ".join(notes)
        return out
    kind = schema.get("type")
    if isinstance(kind, list):
        names = ["number" if k == "integer" else k for k in kind if isinstance(k, str)]
        if names:
            return " | ".join(names)
        kind = None
    if kind == "object":
        return _object_to_typescript(schema, indent)
    if kind == "string":
        values = [f'"{v}"' for v in schema.get("enum") or [] if isinstance(v, str)]
        return " | ".join(values) if values else "string"
    if kind in ("number", "integer"):
        return "number"
    if kind == "boolean":
        return "boolean"
    if kind == "array":
        if "items" in schema:
            return schema_to_typescript(schema["items"], indent) + "[]"
        return "Array<any>"
    return "any"


def _object_to_typescript(schema: dict, indent: str) -> str:
    out = f"{indent}// {schema['description']}\n" if isinstance(schema.get("description"), str) else ""
    out += "{\n"
    listed = schema.get("required")  # a list of names; anything else (a bare string, say) requires nothing
    required = {r for r in listed if isinstance(r, str)} if isinstance(listed, list) else set()
    for key, prop in (schema.get("properties") or {}).items():
        prop = prop if isinstance(prop, dict) else {}  # `"key": true` allows any value
        optional = "" if key in required else "?"
        if isinstance(prop.get("title"), str):
            out += f"{indent}// {prop['title']}\n{indent}//\n"
        one_of = prop.get("oneOf")
        description = prop.get("description") if isinstance(prop.get("description"), str) else None
        if one_of is None and description is not None:
            out += f"{indent}// {description}\n"
        examples = prop.get("examples")
        if isinstance(examples, list) and examples:
            out += f"{indent}// Examples:\n"
            out += "".join(f'{indent}// - "{ex}"\n' for ex in examples if isinstance(ex, str))
        if isinstance(one_of, list):
            out += _one_of_property(key + optional, prop, one_of, description, indent)
            continue
        type_str = _nullable(prop, schema_to_typescript(prop, indent + "    "))
        out += f"{indent}{key}{optional}: {type_str},"
        if one_of is None and "default" in prop:
            out += " // " + _default_comment(prop, unquote_enum=True)
        out += "\n"
    return out + f"{indent}}}"


def _one_of_property(
    name: str, prop: dict, variants: list, description: str | None, indent: str
) -> str:
    """A property whose value is one of several types, one variant per line."""
    variants = [v if isinstance(v, dict) else {} for v in variants]
    first_description = variants[0].get("description") if variants else None
    # The property's description goes above it, unless the first variant repeats it.
    above = description is not None and description != first_description
    out = f"{indent}// {description}\n" if above else ""
    if "default" in prop:
        out += f"{indent}// {_default_comment(prop, unquote_enum=True)}\n"
    out += f"{indent}{name}:\n"
    for i, variant in enumerate(variants):
        out += f"{indent} | " + _nullable(variant, schema_to_typescript(variant, indent + "   "))
        notes = []
        variant_description = variant.get("description")
        if not (i == 0 and above) and isinstance(variant_description, str):
            if variant_description != description:
                notes.append(variant_description)
        if "default" in variant:
            notes.append(_default_comment(variant, unquote_enum=True))
        if notes:
            out += " // " + " ".join(notes)
        out += "\n"
    return out + f"{indent},\n"


def tools_text(namespaces: Iterable[ToolNamespace]) -> str:
    """The "# Tools" section: each namespace with its functions as TypeScript types."""
    sections = ["# Tools"]
    for ns in sorted(namespaces, key=lambda ns: ns.name):
        lines = [f"## {ns.name}\n"]
        for line in _lines(ns.description or ""):
            lines.append(f"// {line}" if ns.tools else line)
        if ns.tools:
            lines.append(f"namespace {ns.name} {{\n")
            for tool in ns.tools:
                lines.extend(f"// {line}" for line in _lines(tool.description))
                if tool.parameters is None:
                    lines.append(f"type {tool.name} = () => any;\n")
                else:
                    lines.append(
                        f"type {tool.name} = (_: {schema_to_typescript(tool.parameters)}) => any;\n"
                    )
            lines.append(f"}} // namespace {ns.name}")
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


def system_text(content: SystemContent, has_function_tools: bool = False) -> str:
    """The text of a system message."""
    top = []
    if content.model_identity is not None:
        top.append(content.model_identity)
    if content.knowledge_cutoff is not None:
        top.append(f"Knowledge cutoff: {content.knowledge_cutoff}")
    if content.date is not None:
        top.append(f"Current date: {content.date}")
    sections = ["\n".join(top)] if top else []
    sections.append(f"Reasoning: {content.reasoning}")
    if content.tools:
        sections.append(tools_text(content.tools))
    if content.channels:
        channels = f"# Valid channels: {', '.join(content.channels)}. "
        channels += "Channel must be included for every message."
        if has_function_tools:
            channels += "\nCalls to these tools must go to the commentary channel: 'functions'."
        sections.append(channels)
    return "\n\n".join(sections)


def developer_text(content: DeveloperContent) -> str:
    """The text of a developer message."""
    sections = []
    if content.instructions is not None:
        sections += ["# Instructions", content.instructions]
    if content.tools:
        sections.append(tools_text([ToolNamespace("functions", content.tools)]))
    return "\n\n".join(sections)


# --------------------------------------------------------------------------------------
# Rendering to token ids
# --------------------------------------------------------------------------------------


def _harmony_encoding(encoding: tiktoken.Encoding | None) -> tiktoken.Encoding:
    if encoding is None:
        return get_encoding("o200k_harmony")
    if START not in encoding.special_tokens_set:  # GPT-2's r50k_base, say: a KeyError on b'<|start|>' deep in tiktoken
        raise ValueError(f"the {encoding.name} encoding has no harmony control tokens ({START}, {END}, ...): "
                         "harmony renders with o200k_harmony (encoding=None, or get_encoding('o200k_harmony'))")
    return encoding


def _special(enc: tiktoken.Encoding, token: str) -> int:
    return enc.encode_single_token(token)


def _text(enc: tiktoken.Encoding, text: str) -> list[int]:
    # Text never becomes a control token: "<|end|>" typed by a user stays seven plain tokens.
    return enc.encode_ordinary(text)


def render_message(
    message: Message,
    has_function_tools: bool = False,
    encoding: tiktoken.Encoding | None = None,
) -> list[int]:
    """The token ids of one message, from <|start|> to <|end|> (or <|call|>)."""
    enc = _harmony_encoding(encoding)
    ids = [_special(enc, START)]
    if message.role == "tool":
        ids += _text(enc, message.name)  # a tool's reply is authored by the tool itself
    else:
        ids += _text(enc, message.role)
        if message.name is not None:  # an empty name still gets its colon, as openai-harmony writes it
            ids += _text(enc, f":{message.name}")
    if message.recipient is not None and message.recipient != "all":
        ids += _text(enc, f" to={message.recipient}")
    if message.channel is not None:
        ids += [_special(enc, CHANNEL)] + _text(enc, message.channel)
    if message.content_type is not None:
        if message.content_type.startswith(CONSTRAIN):
            ids += _text(enc, " ") + [_special(enc, CONSTRAIN)]
            ids += _text(enc, message.content_type[len(CONSTRAIN):])
        else:
            ids += _text(enc, f" {message.content_type}")
    ids.append(_special(enc, MESSAGE))
    if isinstance(message.content, SystemContent):
        ids += _text(enc, system_text(message.content, has_function_tools))
    else:
        ids += _text(enc, message.text)
    is_tool_call = message.role == "assistant" and message.recipient is not None
    ids.append(_special(enc, CALL if is_tool_call else END))
    return ids


def drop_earlier_analysis(messages: list[Message]) -> list[Message]:
    """Drop the thinking of turns that already ended in a final answer.

    Once an answer is on the final channel its analysis is no longer shown to the model;
    thinking after the last final answer (a turn still busy with tool calls) is kept.
    """
    finals = [i for i, m in enumerate(messages) if m.channel == "final"]
    if not finals:
        return list(messages)
    last_final = finals[-1]
    return [m for i, m in enumerate(messages) if not (i < last_final and m.channel == "analysis")]


def render_conversation(
    messages: Iterable[Message],
    next_role: str | None = "assistant",
    drop_analysis: bool = True,
    encoding: tiktoken.Encoding | None = None,
) -> list[int]:
    """The token ids of a conversation, ending with `<|start|>{next_role}` for the model."""
    enc = _harmony_encoding(encoding)
    if isinstance(messages, (str, Message)):
        raise HarmonyError("render_conversation takes a list of messages: [harmony.user('Hi')], say")
    messages = list(messages)
    odd = [m for m in messages if not isinstance(m, Message)][:1]
    if odd:
        raise HarmonyError(f"render_conversation takes Message objects (harmony.system(), harmony.user(...), ...), "
                           f"got {odd[0]!r} ({type(odd[0]).__name__})")
    if drop_analysis:
        messages = drop_earlier_analysis(messages)
    has_function_tools = any(
        isinstance(m.content, DeveloperContent) and m.content.tools for m in messages
    )
    ids: list[int] = []
    for message in messages:
        ids += render_message(message, has_function_tools, enc)
    if next_role is not None:
        if next_role not in ROLES:
            raise HarmonyError(f"unknown role {next_role!r}; choose one of {', '.join(ROLES)}")
        ids += [_special(enc, START)] + _text(enc, next_role)
    return ids


def turns_that_fit(messages: Sequence[Message], length: Callable[[Sequence[Message]], int], budget: int) -> int:
    """How many of the oldest messages to leave out, whole turns at a time, so ``length(kept) <= budget``.

    ``messages`` is a conversation after its system and developer messages, so it starts with a user
    message, where a turn starts. The fewest turns go, and never the last one (the message being
    sent): where even that one alone is over the budget, every earlier turn goes.
    ``length`` is called a few times (a binary search over the turns), each on a shorter conversation.
    """
    if length(messages) <= budget:
        return 0
    starts = [i for i, m in enumerate(messages) if m.role == "user" and i > 0]  # where a later turn begins
    if not starts:
        return 0
    # Leaving out more turns never lengthens the prompt: the first start whose rest fits is the answer.
    k = bisect.bisect_left(range(len(starts)), True, key=lambda j: length(messages[starts[j]:]) <= budget)
    return starts[min(k, len(starts) - 1)]


class Room(NamedTuple):
    """A conversation fitted to a context window for the next reply (make_room)."""

    kept: list[Message]  # the conversation the model sees
    prompt: list[int]  # kept, rendered
    left_out: int  # the turns (user messages, with what followed each) left out
    room: int  # tokens of the context the reply has
    short: bool  # less than it asked for, even so


def make_room(messages: Sequence[Message], render: Callable[[Sequence[Message]], list[int]], context: int,
              max_new_tokens: int) -> Room:
    """``messages`` with their fewest oldest turns left out, so the reply has ``max_new_tokens`` of ``context``.

    The room asked for is at most half the context, so a long reply setting never empties the
    conversation. ``render`` gives a conversation's prompt; each length it is asked for once.
    """
    wanted = min(max_new_tokens, context // 2)
    rendered: dict[int, list[int]] = {}  # by how many of the last messages are kept

    def prompt(kept: Sequence[Message]) -> list[int]:
        if len(kept) not in rendered:
            rendered[len(kept)] = render(kept)
        return rendered[len(kept)]

    drop = turns_that_fit(messages, lambda kept: len(prompt(kept)), context - wanted)
    kept = list(messages[drop:])
    ids = prompt(kept)
    room = context - len(ids)
    return Room(kept, ids, sum(m.role == "user" for m in messages[:drop]), room, room < wanted)


def stop_tokens(encoding: tiktoken.Encoding | None = None) -> list[int]:
    """The tokens on which the model's reply ends: <|return|> (answer) and <|call|> (tool call)."""
    enc = _harmony_encoding(encoding)
    return [_special(enc, RETURN), _special(enc, CALL)]


def end_of_text(encoding: tiktoken.Encoding | None = None) -> int:
    """<|endoftext|>: no harmony token, but one of the three eos ids (generation_config.json); a chat ends there."""
    return _special(_harmony_encoding(encoding), END_OF_TEXT)


# --------------------------------------------------------------------------------------
# Parsing what the model writes
# --------------------------------------------------------------------------------------


# As openai-harmony reads a header: a space of any script (Unicode's White_Space, Rust's trim and
# is_whitespace) ends the channel's name and is trimmed from the header's ends, but only ASCII ones part
# its words (Rust's is_ascii_whitespace), so a no-break or ideographic space inside a tool's name stays in it.
HEADER_SPACE = " \t\n\x0c\r"
WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
    "\u2028\u2029\u202f\u205f\u3000"  # str.isspace's, less the separators \x1c-\x1f


def _parse_header(header: str, role: str | None) -> tuple[str, str | None, str | None, str | None, str | None]:
    """Split a header like `assistant to=functions.f<|channel|>commentary <|constrain|>json`.

    Returns (role, name, channel, recipient, content_type).
    """
    channel = None
    at = header.find(CHANNEL)
    if at >= 0:
        rest = header[at + len(CHANNEL):]
        end = next((i for i, c in enumerate(rest) if c in WHITE_SPACE or c == "<"), len(rest))
        channel = rest[:end]
        if not channel:
            raise HarmonyError(f"header {header!r} has <|channel|> but no channel name")
        if channel not in CHANNELS:  # refused at the header, before any of its text is streamed
            raise HarmonyError(f"unknown channel {channel!r}; choose one of {', '.join(CHANNELS)}")
        header = header[:at] + rest[end:]
    if CONSTRAIN in header:  # "to=f<|constrain|>json" -> "to=f <|constrain|>json"
        header = header.replace(CONSTRAIN, " " + CONSTRAIN)
    parts = [p for p in re.split(f"[{HEADER_SPACE}]+", header.strip(WHITE_SPACE)) if p]

    name = None
    if role is None:
        if not parts:
            raise HarmonyError("message header has no role")
        first, _, author = parts[0].partition(":")
        if parts[0] in ROLES:
            role = parts[0]
            name = parts[0] if role == "tool" else None
        elif first in ROLES and first != "tool" and parts[0] != first:
            role, name = first, author  # "user:alice", or "user:" for name="" (openai-harmony 0.0.8 reads neither)
            parts[0] = role
        elif len(parts) > 1 or parts[0].startswith("to="):
            role, name = "tool", parts.pop(0)  # a tool's reply names the tool as its author
        else:
            raise HarmonyError(f"unknown role {parts[0]!r} in message header {header!r}")
    if parts and parts[0] == role:
        parts.pop(0)

    recipient = content_type = None
    if parts:
        last = parts.pop()
        if last.startswith("to="):
            recipient = last[3:]
        elif not parts and not last.startswith(CONSTRAIN):
            recipient = last
        else:
            content_type = last
            if parts:
                recipient = parts.pop().removeprefix("to=")
    if parts:
        raise HarmonyError(f"unexpected words {' '.join(parts)!r} in message header")
    return role, name, channel, recipient, content_type


class StreamParser:
    """Reads the model's tokens one at a time and splits them into messages as they arrive.

    After `process(token)`: `state` is "start", "header" or "content"; `current_channel`
    says where the text now goes (analysis = thinking, final = the answer); `last_delta`
    is the text this token added (empty while a multi-byte character is still incomplete);
    `messages` holds the messages completed so far.
    """

    def __init__(self, role: str | None = "assistant", encoding: tiktoken.Encoding | None = None) -> None:
        self.enc = _harmony_encoding(encoding)
        if role is not None and role not in ROLES:
            raise HarmonyError(f"unknown role {role!r}; choose one of {', '.join(r for r in ROLES if r != 'tool')}")
        if role == "tool":  # its header is `<|start|>functions.f ...`: the name comes first, in place of the role
            raise HarmonyError("a tool message names the tool where the role goes (<|start|>functions.f to=assistant"
                               "...): parse it from its <|start|> token, with role=None")
        self.tokens: list[int] = []
        self.messages: list[Message] = []
        self.last_delta = ""
        self._next_role = role
        # A prompt ending in `<|start|>assistant` leaves the model inside a header.
        self.state = "start" if role is None else "header"
        self._header_ids: list[int] = []
        self._header: tuple | None = None
        self._text = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._start, self._message = _special(self.enc, START), _special(self.enc, MESSAGE)
        self._stops = {_special(self.enc, t) for t in (RETURN, END, CALL)}

    @property
    def current_role(self) -> str | None:
        """The role of the message being read (before its header: the role the parser expects)."""
        return self._header[0] if self.state == "content" else self._next_role

    @property
    def current_channel(self) -> str | None:
        """The channel of the message being read, once its header is complete."""
        return self._header[2] if self.state == "content" else None

    @property
    def current_recipient(self) -> str | None:
        """Whom the message being read is addressed to (a tool, for a tool call)."""
        return self._header[3] if self.state == "content" else None

    @property
    def header_so_far(self) -> str:
        """The header of the message being read, as far as it got ("" once its text has begun)."""
        return self.enc.decode(self._header_ids, errors="replace") if self.state == "header" else ""

    @property
    def current_content(self) -> str:
        """The text of the message being read, so far."""
        return self._text if self.state == "content" else ""

    def process(self, token: int) -> str:
        """Take one token; return the text it added to the current message."""
        try:
            token = operator.index(token)  # a 0-d tensor would miss the stop-token set (tensors hash by identity)
        except TypeError:
            raise HarmonyError(f"the parser takes token ids (ints), got {token!r} ({type(token).__name__})"
                               + (": encode text first" if isinstance(token, str) else "")) from None
        self.tokens.append(token)
        self.last_delta = ""
        if self.state == "start":
            if token != self._start:
                raise HarmonyError(
                    f"expected <|start|> ({self._start}) to begin a message, got token {token} "
                    f"({self.enc.decode([token])!r})"
                )
            self.state, self._header_ids = "header", []
        elif self.state == "header":
            if token == self._message:
                header = self.enc.decode_bytes(self._header_ids)
                try:
                    header_text = header.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise HarmonyError(f"message header {header!r} is not valid UTF-8") from e
                self._header = _parse_header(header_text, self._next_role)
                self._next_role = None
                self.state, self._text = "content", ""
            else:
                self._header_ids.append(token)
        elif token in self._stops:
            self._finish()
        else:
            # Tokens can end inside a multi-byte character: decode incrementally.
            self.last_delta = self._decoder.decode(self.enc.decode_single_token_bytes(token))
            self._text += self.last_delta
        return self.last_delta

    def process_eos(self) -> None:
        """The stream ended (a stop token was the last one fed): close any open message."""
        if self.state == "header":
            raise HarmonyError("the token stream ended inside a message header")
        if self.state == "content":
            self._finish()

    def _finish(self) -> None:
        self._text += self._decoder.decode(b"", final=True)
        role, name, channel, recipient, content_type = self._header
        self.messages.append(Message(role, self._text, channel, recipient, content_type, name))
        self.state, self._header, self._text = "start", None, ""
        self._decoder.reset()


@dataclass(frozen=True)
class Piece:
    """What one token of a reply added: text (maybe none yet) to the message on ``channel``."""

    channel: str | None
    recipient: str | None  # a tool, for a tool call; None for the user
    text: str  # empty for the <|message|> that opens the text, or a character still incomplete
    opens: bool  # the <|message|> token: the header is complete, the text begins

    @property
    def answer(self) -> bool:
        """Whether this is text of the answer a chat shows and keeps (see :func:`is_answer`)."""
        return is_answer(self.channel, self.recipient)


def is_answer(channel: str | None, recipient: str | None) -> bool:
    """The answer: the final channel, or no channel at all (kept as final), and addressed to no tool."""
    return channel in ("final", None) and recipient is None


# More tokens than any header holds (` to=functions.name<|channel|>commentary <|constrain|>json` is about a dozen):
# a reply stopped after as many without a message begun was not writing a header.
LONGEST_HEADER = 32


class ReplyReader:
    """Follows an assistant reply as it streams, for a chat: its pieces of text, then the messages to keep.

    The terminal chat and notebook 12's widget read replies with it. Generate with
    ``stop_tokens=reader.stop_tokens``: <|return|>, <|call|> and <|endoftext|> (one of gpt-oss's
    eos ids), which ends the reply without text. The reply also ends where the tokens break the
    format (``problem``) or where the model begins a message in another role (``taken``: it
    went on to write the user's turn itself).
    """

    def __init__(self, encoding: tiktoken.Encoding | None = None) -> None:
        self.enc = _harmony_encoding(encoding)
        self.parser = StreamParser("assistant", self.enc)
        self.end_of_text = end_of_text(self.enc)
        self.stop_tokens = stop_tokens(self.enc) + [self.end_of_text]
        self.problem: str | None = None
        self.taken: str | None = None
        self.tokens_read = 0

    def read(self, tokens: Iterable[int]) -> Iterator[Piece]:
        """Feed ``tokens`` to the parser; a :class:`Piece` for each one inside a message of the assistant's."""
        parser = self.parser
        for token in tokens:
            self.tokens_read += 1
            if token == self.end_of_text:  # a stop, so the last token: the reply ends, as at <|return|>
                continue
            was_content = parser.state == "content"
            try:
                text = parser.process(token)
            except HarmonyError as e:
                self.problem = str(e)
                return
            if parser.state != "content":
                continue
            if parser.current_role != "assistant":
                self.taken = parser.current_role
                return
            yield Piece(parser.current_channel, parser.current_recipient, text, not was_content)

    def messages(self) -> list[Message]:
        """The assistant's messages to keep in the conversation, with an answer cut short as far as it got.

        Tool calls are left out (a chat without tools), and so is text in another role.
        """
        parser = self.parser
        # An answer without a channel is kept as final, finished or not: only a final answer lets the next
        # prompt drop this turn's thinking (drop_earlier_analysis).
        kept = [replace(m, channel="final") if m.channel is None else m
                for m in parser.messages if m.recipient is None and m.role == "assistant"]
        if (parser.state == "content" and parser.current_role == "assistant" and parser.current_content
                and is_answer(parser.current_channel, parser.current_recipient)):  # not a tool call cut short
            kept.append(assistant(parser.current_content, "final"))
        return kept

    def answered(self) -> bool:
        """Whether the reply holds an answer to keep (the final channel, or none), complete or cut short."""
        return any(is_answer(m.channel, m.recipient) for m in self.messages())

    def still_thinking(self) -> bool:
        """Whether the reply stopped inside the assistant's thinking (an analysis message), with no answer."""
        parser = self.parser
        return (parser.state == "content" and parser.current_role == "assistant"
                and parser.current_channel == "analysis" and not self.answered())

    def stop_reason(self, generated: str) -> str:
        """Why the reply ended: ``generated`` (the generator's reason), unless this reader cut it first."""
        if self.taken is not None:  # the model began writing another role's turn: its reply was over
            return "other_role"
        if self.problem is not None:  # the tokens broke the format
            return "format_problem"
        return generated

    def tool_calls(self) -> list[str]:
        """The recipients of the tool calls the model completed."""
        return [m.recipient for m in self.parser.messages if m.recipient is not None]

    def format_problem(self, cut_short: bool = False) -> str | None:
        """Why the reply does not follow the harmony format, or None when it does (as far as it got).

        ``cut_short``: the reply was stopped from outside (Ctrl-C, a full context, the token budget), so a
        header not yet complete is no fault of the model's, as long as it could still become one.
        """
        parser = self.parser
        if (self.problem is None and self.tokens_read and not parser.messages and parser.state != "content"
                and (not cut_short or not self._could_be_a_header())):
            return "no complete message header"
        return self.problem

    def _could_be_a_header(self) -> bool:
        """Whether the unfinished header read so far could still be one: short, begun as a header begins
        (`<|channel|>` or ` to=`), and with no "<" but its markers'."""
        text = self.parser.header_so_far
        lead = text.lstrip(HEADER_SPACE)
        begun = CHANNEL in text or lead.startswith("to=") or "to=".startswith(lead)
        words = text.replace(CHANNEL, " ").replace(CONSTRAIN, " ")
        return begun and self.tokens_read <= LONGEST_HEADER and "<" not in words


def parse_completion(
    tokens: Iterable[int],
    role: str | None = "assistant",
    encoding: tiktoken.Encoding | None = None,
) -> list[Message]:
    """The messages in tokens the model wrote after `<|start|>{role}` (role=None: after nothing)."""
    if isinstance(tokens, str):
        raise HarmonyError("parse_completion takes the token ids the model wrote, not text: encode it first")
    parser = StreamParser(role, encoding)
    for token in tokens:
        parser.process(token)
    parser.process_eos()
    return parser.messages
