"""A strict YAML subset (and JSON) for expectation files, with a line number on every node.

Why not PyYAML: no new dependency, and a full YAML parser accepts far too much for a file that
decides whether CI passes (anchors, tags, implicit dates and octal numbers, ``yes`` meaning true).
This subset is chosen so that every file it accepts means the same thing to a real YAML parser;
whatever falls outside it is an error naming the file and line, never silently reinterpreted.

Accepted:

* block mappings (``key: value``) and block sequences (``- item``), nested by indentation
  (spaces only), including ``- key: value`` items and a sequence at the same indentation as its key;
* flow collections on one line: ``[a, b]``, ``{origin: abort, sender: client}``, nested;
* scalars: plain, 'single-quoted' ('' is a quote) and "double-quoted" (JSON-style escapes);
  ``null``/``~``, ``true``/``false``, decimal integers and floats; everything else is a string;
* comments (``#`` at the start of a line or after a space), one leading ``---`` line.

Rejected with a file:line error: tabs in indentation, anchors/aliases/tags, block scalars (``|``, ``>``),
multi-line flow collections or scalars, complex keys, duplicate keys, several documents, and plain
scalars YAML 1.1 would read as something else (``yes``, ``on``, ``010``, ``0x1F``, ``1:30``, dates):
quote those.

JSON files get the same treatment (:func:`parse_json`): duplicate keys are errors and every node has
its line.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from typing import Any

Scalar = str | int | float | bool | None


class ParseError(Exception):
    """A syntax error at ``path:line``."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class Node:
    """A parsed value and the line it starts on.

    ``value`` is a ``dict[str, Node]`` (mapping), a ``list[Node]`` (sequence) or a scalar;
    for a mapping, ``key_lines`` gives the line of each key (what "unknown key" errors name).
    """

    value: Any
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)

    def plain(self) -> Any:
        """The value as plain Python data (dicts, lists, scalars)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


# -- YAML subset -----------------------------------------------------------------------------------

@dataclass(slots=True)
class _Line:
    no: int  # 1-based line number
    indent: int
    text: str  # content after the indentation, comment and trailing spaces removed


# Characters that cannot start a plain scalar here (YAML indicators; "-", "?", ":" only before a space).
_INDICATORS = set("&*!|>%@`")
_NULLS = {"null", "Null", "NULL", "~"}
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(r"[-+]?[0-9]+\.[0-9]*\Z|\.[0-9]+\Z")
# Plain scalars that YAML 1.1 (PyYAML) or 1.2 would not read as the string they look like.
_AMBIGUOUS = re.compile(
    r"(?i:y|n|yes|no|on|off)\Z"  # YAML 1.1 booleans
    r"|[-+]?0[0-9_]+\Z"  # leading zeros: octal in YAML 1.1
    r"|[-+]?0[xob][0-9a-f_]+\Z"  # hexadecimal, octal, binary
    r"|[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?\Z"  # sexagesimal (1:30)
    r"|[-+]?[0-9][0-9_]*_[0-9_]*\Z"  # digit separators
    r"|[-+]?[0-9_]*\.?[0-9_]*[eE][-+]?[0-9]+\Z"  # exponents: floats to some parsers, text to others
    r"|[-+]\.[0-9]+\Z"  # a float in YAML 1.2, text in PyYAML
    r"|[-+]?\.(?i:inf|nan)\Z"
    r"|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?\Z"  # dates and timestamps
    r"|<<\Z|=\Z"  # PyYAML's merge key and value indicator
)
# YAML's printable set (c-printable) less NEL, LS and PS, which YAML 1.1 parsers read as line breaks.
_NOT_PRINTABLE = re.compile("[^\t\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_DQ_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
               "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


def parse_yaml(text: str, path: str) -> Node | None:
    """Parse ``text`` (the subset above); ``None`` for a document with no content."""
    return _YamlParser(text, path).parse()


class _YamlParser:
    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.lines = self._split(text)
        self.i = 0

    def error(self, line: int, message: str) -> ParseError:
        return ParseError(self.path, line, message)

    # -- lines ---------------------------------------------------------------------------------
    def _split(self, text: str) -> list[_Line]:
        out: list[_Line] = []
        marker_seen = False
        if text.startswith("\ufeff"):
            text = text[1:]
        for no, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
            bad = _NOT_PRINTABLE.search(raw)
            if bad:
                raise self.error(no, f"character U+{ord(bad.group()):04X} is not allowed in YAML text; write it as an "
                                     "escape inside double quotes")
            stripped = raw.lstrip(" ")
            indent = len(raw) - len(stripped)
            body = self._strip_comment(stripped, no).rstrip()
            if not body.strip():
                continue
            if body[0] == "\t":
                raise self.error(no, "tab in indentation: YAML indents with spaces only")
            if indent == 0 and (body in ("---", "...") or body.startswith(("--- ", "%"))):
                if body == "---" and not out and not marker_seen:
                    marker_seen = True
                    continue  # one leading document marker is fine
                raise self.error(no, f"{body.split()[0]!r}: one document per file, without directives")
            out.append(_Line(no, indent, body))
        return out

    def _strip_comment(self, s: str, no: int) -> str:
        """Cut a comment: '#' at the start or after whitespace, outside quoted scalars."""
        quote = ""
        i = 0
        prev_sig = ""  # last non-space character before i, outside quotes
        while i < len(s):
            c = s[i]
            if quote == '"':
                if c == "\\":
                    i += 2
                    continue
                if c == '"':
                    quote = ""
            elif quote == "'":
                if c == "'":
                    if i + 1 < len(s) and s[i + 1] == "'":
                        i += 2
                        continue
                    quote = ""
            elif c in "\"'" and (i == 0 or s[i - 1] in " [{,") and prev_sig in ("", ":", "-", "[", "{", ","):
                quote = c
            elif c == "#" and (i == 0 or s[i - 1] in " \t"):
                return s[:i]
            elif c == "\t":
                raise self.error(no, "tab character: YAML indents and separates with spaces (write \\t inside "
                                     "double quotes for a tab)")
            if c not in " \t":
                prev_sig = c
            i += 1
        return s

    # -- block structure -----------------------------------------------------------------------
    def parse(self) -> Node | None:
        if not self.lines:
            return None
        first = self.lines[0]
        if first.indent != 0:
            raise self.error(first.no, "the document must start at column 1 (no indentation)")
        node = self.block(0)
        if self.i < len(self.lines):
            ln = self.lines[self.i]
            kind = "list" if isinstance(node.value, list) else "mapping" if isinstance(node.value, dict) else "value"
            raise self.error(ln.no, f"unexpected {_show(ln.text)}: it does not continue the {kind} that starts on "
                                    f"line {node.line}")
        return node

    def block(self, indent: int) -> Node:
        ln = self.lines[self.i]
        if _is_item(ln.text):
            return self.sequence(indent)
        if _split_key(ln.text, self, ln.no) is not None:
            return self.mapping(indent)
        # A lone scalar or flow collection as a whole block.
        self.i += 1
        node = self.inline(ln.text, ln.no)
        self.no_deeper(indent, "a value")
        return node

    def no_deeper(self, indent: int, what: str) -> None:
        """After a value that ends on its line, the next line must not be indented further."""
        if self.i < len(self.lines) and self.lines[self.i].indent > indent:
            nxt = self.lines[self.i]
            raise self.error(nxt.no, f"bad indentation: this line is indented more than {what} above it "
                                     "(multi-line scalars and flow collections are not supported)")

    def mapping(self, indent: int) -> Node:
        items: dict[str, Node] = {}
        key_lines: dict[str, int] = {}
        start = self.lines[self.i].no
        while self.i < len(self.lines):
            ln = self.lines[self.i]
            if ln.indent < indent:
                break
            if ln.indent > indent:
                raise self.error(ln.no, f"bad indentation: expected {indent} spaces, found {ln.indent}")
            if _is_item(ln.text):
                raise self.error(ln.no, "a list item where a 'key: value' line was expected")
            split = _split_key(ln.text, self, ln.no)
            if split is None:
                raise self.error(ln.no, f"expected 'key: value', found {_show(ln.text)}")
            key, rest = split
            if key in items:
                raise self.error(ln.no, f"duplicate key {key!r} (first on line {key_lines[key]})")
            self.i += 1
            if rest:
                value = self.inline(rest, ln.no)
                self.no_deeper(indent, f"key {key!r}")
            elif self.i < len(self.lines) and self.lines[self.i].indent > indent:
                value = self.block(self.lines[self.i].indent)
            elif (self.i < len(self.lines) and self.lines[self.i].indent == indent
                  and _is_item(self.lines[self.i].text)):
                value = self.sequence(indent)  # "key:\n- a": YAML allows the list at the key's indentation
            else:
                value = Node(None, ln.no)
            items[key] = value
            key_lines[key] = ln.no
        return Node(items, start, key_lines)

    def sequence(self, indent: int) -> Node:
        items: list[Node] = []
        start = self.lines[self.i].no
        while self.i < len(self.lines):
            ln = self.lines[self.i]
            if ln.indent < indent:
                break
            if ln.indent > indent:
                raise self.error(ln.no, f"bad indentation: expected {indent} spaces, found {ln.indent}")
            if not _is_item(ln.text):
                break  # e.g. the next key of a mapping whose list sits at the key's indentation
            rest = ln.text[1:]
            content = rest.lstrip(" ")
            if not content:
                self.i += 1
                if self.i < len(self.lines) and self.lines[self.i].indent > indent:
                    items.append(self.block(self.lines[self.i].indent))
                else:
                    items.append(Node(None, ln.no))
                continue
            # "- x": parse x as if it were a line of its own at its column (compact nested blocks).
            column = indent + 1 + (len(rest) - len(content))
            self.lines[self.i] = _Line(ln.no, column, content)
            items.append(self.block(column))
        return Node(items, start)

    # -- one-line values -----------------------------------------------------------------------
    def inline(self, text: str, no: int) -> Node:
        value, pos = self.flow_value(text, 0, no, flow=False)
        if text[pos:].strip():
            raise self.error(no, f"unexpected text after the value: {_show(text[pos:].strip())}")
        return value

    def flow_value(self, s: str, pos: int, no: int, flow: bool) -> tuple[Node, int]:
        pos = _skip_spaces(s, pos)
        if pos >= len(s):
            if flow:
                raise self.error(no, "unterminated '[' or '{': a flow collection must end on the line it starts")
            raise self.error(no, "a value is missing")
        c = s[pos]
        if c == "[":
            return self.flow_seq(s, pos + 1, no)
        if c == "{":
            return self.flow_map(s, pos + 1, no)
        if c in "\"'":
            text, pos = self.quoted(s, pos, no)
            return Node(text, no), pos
        if flow:
            m = re.compile(r"[^,\[\]{}]*").match(s, pos)
            assert m is not None
            raw = m.group().rstrip()
            end = pos + len(raw)
            if re.search(r":( |$)", raw):
                raise self.error(no, f"{_show(raw)}: 'key: value' inside [ ] is not supported; use {{key: value}}")
            if raw[:1] in ("?", ":") or "?" in raw:
                raise self.error(no, f"{_show(raw)}: '?' and a leading ':' inside [ ] or {{ }} need quotes")
        else:
            raw, end = s[pos:].rstrip(), len(s.rstrip())
            if re.search(r":( |$)", raw):
                raise self.error(no, f"{_show(raw)}: a second ': ' on one line; quote the value")
        return Node(self.plain(raw, no), no), end

    def flow_seq(self, s: str, pos: int, no: int) -> tuple[Node, int]:
        items: list[Node] = []
        pos = _skip_spaces(s, pos)
        if pos < len(s) and s[pos] == "]":
            return Node(items, no), pos + 1
        while True:
            node, pos = self.flow_value(s, pos, no, flow=True)
            items.append(node)
            pos = _skip_spaces(s, pos)
            if pos >= len(s):
                raise self.error(no, "unterminated '[': a flow list must end on the line it starts")
            if s[pos] == "]":
                return Node(items, no), pos + 1
            if s[pos] != ",":
                raise self.error(no, f"expected ',' or ']' in a flow list, found {_show(s[pos:])}")
            pos += 1

    def flow_map(self, s: str, pos: int, no: int) -> tuple[Node, int]:
        items: dict[str, Node] = {}
        pos = _skip_spaces(s, pos)
        if pos < len(s) and s[pos] == "}":
            return Node(items, no, {}), pos + 1
        while True:
            pos = _skip_spaces(s, pos)
            if pos < len(s) and s[pos] in "\"'":
                key, pos = self.quoted(s, pos, no)
            else:
                m = re.compile(r"[^,\[\]{}:]*").match(s, pos)
                assert m is not None
                key = m.group().strip()
                pos = m.end()
                if not key:
                    raise self.error(no, f"a key is missing in a flow mapping at {_show(s[pos:])}")
                key = self.key_text(key, no)
                if "?" in key:
                    raise self.error(no, f"{_show(key)}: '?' inside {{ }} needs quotes")
                if s[pos : pos + 1] == ":" and s[pos + 1 : pos + 2] != " ":
                    raise self.error(no, f"put a space after ':' in {_show(key + s[pos:])}")
            pos = _skip_spaces(s, pos)
            if pos >= len(s) or s[pos] != ":":
                raise self.error(no, f"expected ':' after key {key!r} in a flow mapping")
            if key in items:
                raise self.error(no, f"duplicate key {key!r}")
            node, pos = self.flow_value(s, pos + 1, no, flow=True)
            items[key] = node
            pos = _skip_spaces(s, pos)
            if pos >= len(s):
                raise self.error(no, "unterminated '{': a flow mapping must end on the line it starts")
            if s[pos] == "}":
                return Node(items, no, {k: no for k in items}), pos + 1
            if s[pos] != ",":
                raise self.error(no, f"expected ',' or '}}' in a flow mapping, found {_show(s[pos:])}")
            pos += 1

    def quoted(self, s: str, pos: int, no: int) -> tuple[str, int]:
        q = s[pos]
        out: list[str] = []
        i = pos + 1
        while i < len(s):
            c = s[i]
            if q == "'" and c == "'":
                if i + 1 < len(s) and s[i + 1] == "'":
                    out.append("'")
                    i += 2
                    continue
                return "".join(out), i + 1
            if q == '"' and c == '"':
                return "".join(out), i + 1
            if q == '"' and c == "\\":
                e = s[i + 1 : i + 2]
                if e in _DQ_ESCAPES:
                    out.append(_DQ_ESCAPES[e])
                    i += 2
                    continue
                if e in _HEX_ESCAPES:
                    n = _HEX_ESCAPES[e]
                    digits = s[i + 2 : i + 2 + n]
                    if len(digits) != n or not all(d in "0123456789abcdefABCDEF" for d in digits):
                        raise self.error(no, f"bad escape \\{e}{digits}: needs {n} hex digits")
                    out.append(chr(int(digits, 16)))
                    i += 2 + n
                    continue
                raise self.error(no, f"unknown escape \\{e or '(end of line)'} in a double-quoted string")
            out.append(c)
            i += 1
        raise self.error(no, f"unterminated {q}-quoted string: quoted strings must end on the line they start")

    def key_text(self, raw: str, no: int) -> str:
        """A plain key; one YAML would read as a number, boolean or null is an error (quote it)."""
        if raw[0] in "?[]{},#":
            raise self.error(no, f"{_show(raw)} cannot be a key: keys are plain words or quoted strings")
        value = self.plain(raw, no)
        if not isinstance(value, str):
            raise self.error(no, f"key {raw!r} is not text to YAML (it reads as {value!r}): quote it")
        return value

    def plain(self, raw: str, no: int) -> Scalar:
        if not raw:
            raise self.error(no, "a value is missing")
        if raw[0] in _INDICATORS or raw[0] in ",[]{}#" or (raw[0] in "-?:" and (len(raw) == 1 or raw[1] == " ")):
            what = {"&": "anchors", "*": "aliases", "!": "tags", "|": "block scalars", ">": "block scalars",
                    "%": "directives", "@": "reserved characters", "`": "reserved characters"}.get(raw[0], "indicators")
            raise self.error(no, f"{_show(raw)}: YAML {what} are not supported; quote the value if it is text")
        if raw in _NULLS:
            return None
        if raw in _BOOLS:
            return _BOOLS[raw]
        if _INT.match(raw):
            return int(raw)
        if _FLOAT.match(raw):
            return float(raw)
        if _AMBIGUOUS.match(raw):
            raise self.error(no, f"{_show(raw)} is ambiguous in YAML (a boolean, number or date to some parsers): "
                                 "quote it")
        return raw


def _is_item(text: str) -> bool:
    return text == "-" or text.startswith("- ")


def _split_key(text: str, p: _YamlParser, no: int) -> tuple[str, str] | None:
    """``key: rest`` -> (key, rest); None when the line is not a mapping entry."""
    if text[0] in "\"'":
        key, pos = p.quoted(text, 0, no)
        rest = text[pos:]
        if rest.startswith(":") and (len(rest) == 1 or rest[1] == " "):
            return key, rest[1:].strip()
        return None
    if text[0] in "[{":
        return None
    m = re.match(r"(.*?):( |$)", text)
    if m is None:
        return None
    key = m.group(1).rstrip()
    if not key:
        raise p.error(no, "a key is missing before ':'")
    return p.key_text(key, no), text[m.end():].strip()


def _skip_spaces(s: str, pos: int) -> int:
    while pos < len(s) and s[pos] == " ":
        pos += 1
    return pos


def _show(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


# -- JSON ------------------------------------------------------------------------------------------

_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_JSON_WS = " \t\r\n"


def parse_json(text: str, path: str) -> Node | None:
    """Parse JSON into nodes with lines; duplicate keys are errors. ``None`` for an empty file."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        return None
    p = _JsonParser(text, path)
    node, pos = p.value(p.ws(0))
    pos = p.ws(pos)
    if pos != len(text):
        raise p.error(pos, "unexpected text after the JSON value")
    return node


class _JsonParser:
    def __init__(self, text: str, path: str) -> None:
        self.s = text
        self.path = path
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line(self, pos: int) -> int:
        return bisect.bisect_right(self.starts, pos)

    def error(self, pos: int, message: str) -> ParseError:
        return ParseError(self.path, self.line(pos), message)

    def ws(self, pos: int) -> int:
        s = self.s
        while pos < len(s) and s[pos] in _JSON_WS:
            pos += 1
        return pos

    def value(self, pos: int) -> tuple[Node, int]:
        s = self.s
        if pos >= len(s):
            raise self.error(pos, "unexpected end of file: a value is missing")
        c = s[pos]
        line = self.line(pos)
        if c == "{":
            return self.obj(pos + 1, line)
        if c == "[":
            return self.arr(pos + 1, line)
        if c == '"':
            text, end = self.string(pos)
            return Node(text, line), end
        for word, val in (("true", True), ("false", False), ("null", None)):
            if s.startswith(word, pos):
                return Node(val, line), pos + len(word)
        m = _JSON_NUMBER.match(s, pos)
        if m and m.group():
            num = m.group()
            return Node(float(num) if m.group(2) or m.group(3) else int(num), line), m.end()
        raise self.error(pos, f"expected a JSON value, found {_show(s[pos:pos + 20])}")

    def string(self, pos: int) -> tuple[str, int]:
        try:
            return json.decoder.scanstring(self.s, pos + 1, True)
        except json.JSONDecodeError as e:
            raise self.error(e.pos, e.msg) from None

    def obj(self, pos: int, line: int) -> tuple[Node, int]:
        items: dict[str, Node] = {}
        key_lines: dict[str, int] = {}
        pos = self.ws(pos)
        if pos < len(self.s) and self.s[pos] == "}":
            return Node(items, line, key_lines), pos + 1
        while True:
            pos = self.ws(pos)
            if pos >= len(self.s) or self.s[pos] != '"':
                raise self.error(pos, "expected a quoted key")
            kline = self.line(pos)
            key, pos = self.string(pos)
            if key in items:
                raise self.error(pos, f"duplicate key {key!r} (first on line {key_lines[key]})")
            pos = self.ws(pos)
            if pos >= len(self.s) or self.s[pos] != ":":
                raise self.error(pos, f"expected ':' after key {key!r}")
            node, pos = self.value(self.ws(pos + 1))
            items[key] = node
            key_lines[key] = kline
            pos = self.ws(pos)
            if pos < len(self.s) and self.s[pos] == "}":
                return Node(items, line, key_lines), pos + 1
            if pos >= len(self.s) or self.s[pos] != ",":
                raise self.error(pos, "expected ',' or '}' in an object")
            pos += 1

    def arr(self, pos: int, line: int) -> tuple[Node, int]:
        items: list[Node] = []
        pos = self.ws(pos)
        if pos < len(self.s) and self.s[pos] == "]":
            return Node(items, line), pos + 1
        while True:
            node, pos = self.value(self.ws(pos))
            items.append(node)
            pos = self.ws(pos)
            if pos < len(self.s) and self.s[pos] == "]":
                return Node(items, line), pos + 1
            if pos >= len(self.s) or self.s[pos] != ",":
                raise self.error(pos, "expected ',' or ']' in an array")
            pos += 1


# -- writing ---------------------------------------------------------------------------------------

_SAFE_PLAIN = re.compile(r"[A-Za-z0-9_./+<()][A-Za-z0-9_./+=<>()*-]*\Z")


def scalar_text(value: Scalar) -> str:
    """A scalar as this subset writes it: plain when that reads back identically, else double-quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return repr(value)
    text = str(value)
    if (_SAFE_PLAIN.match(text) and text not in _NULLS and text not in _BOOLS and not _INT.match(text)
            and not _FLOAT.match(text) and not _AMBIGUOUS.match(text)):
        return text
    return '"' + "".join(_escape(c) for c in text) + '"'


_SHORT_ESCAPES = {"\0": "\\0", "\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f",
                  "\r": "\\r", "\x1b": "\\e", '"': '\\"', "\\": "\\\\"}


def _escape(c: str) -> str:
    """One character inside a double-quoted scalar: printable ones as they are, the rest as escapes."""
    if c in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[c]
    if c.isprintable() and not _NOT_PRINTABLE.match(c) and c != "\ufeff":
        return c
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"
