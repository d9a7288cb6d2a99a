"""The Dockerfile parser: parser directives (`# escape=`), comments, line
continuations, instruction names in any case, `--flag=value` options, the JSON
(exec) form, and docker's variable substitution (`$VAR`, `${VAR}`,
`${VAR:-default}`, `${VAR:+alt}`, quotes and the escape character).

    instructions = parse(text, "Dockerfile")
    words = expand_words("$SRC /dst/", env, escape)
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from pyrt.errors import BuildError

INSTRUCTIONS = {"FROM", "RUN", "CMD", "ENTRYPOINT", "ENV", "ARG", "LABEL", "EXPOSE", "VOLUME",
                "WORKDIR", "USER", "STOPSIGNAL", "SHELL", "COPY", "ADD", "MAINTAINER", "HEALTHCHECK",
                "ONBUILD"}
# the options each instruction takes (others are refused, not ignored)
FLAGS = {"FROM": {"platform"}, "COPY": {"from", "chown", "chmod"}, "ADD": {"chown", "chmod"},
         "HEALTHCHECK": {"interval", "timeout", "start-period", "start-interval", "retries"}}

_DIRECTIVE = re.compile(r"#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Instruction:
    cmd: str              # upper case: "RUN"
    args: str             # the text after the name and the flags
    line: int             # where it starts in the file
    original: str         # name and arguments as written (continuations joined)
    flags: dict = field(default_factory=dict)
    json: list | None = None  # the exec form, when the arguments are a JSON list of strings


def parse(text: str, filename: str = "Dockerfile") -> tuple[list[Instruction], str]:
    """The instructions of a Dockerfile and its escape character."""
    lines = text.splitlines()
    escape, first = _directives(lines, filename)
    out = []
    for lineno, line in _logical_lines(lines, first, escape):
        word, rest = re.fullmatch(r"(\S+)\s*(.*)", line.strip(), re.S).groups()
        cmd = word.upper()
        where = f"{filename}:{lineno}"
        if cmd not in INSTRUCTIONS:
            raise BuildError(f"{where}: unknown instruction: {cmd}")
        flags, rest = _flags(cmd, rest, where)
        if not rest and cmd not in ("CMD", "ENTRYPOINT"):
            raise BuildError(f"{where}: {cmd} requires at least one argument")
        out.append(Instruction(cmd, rest, lineno, line.strip(), flags, json_form(rest)))
    return out, escape


def _directives(lines, filename) -> tuple[str, int]:
    """The escape character (from `# escape=`) and the index of the first line after
    the directives (which must come first, one per line)."""
    escape, seen = "\\", set()
    for i, line in enumerate(lines):
        m = _DIRECTIVE.fullmatch(line)
        if not m:
            return escape, i
        key, value = m.group(1).lower(), m.group(2)
        if key in seen:
            raise BuildError(f"{filename}:{i + 1}: only one {key} parser directive can be used")
        seen.add(key)
        if key == "escape":
            if value not in ("\\", "`"):
                raise BuildError(f"{filename}:{i + 1}: invalid escape {value!r}: must be ` or \\")
            escape = value
    return escape, len(lines)


def _logical_lines(lines, start, escape):
    """(line number, text) of each instruction: comments and blank lines skipped, a
    line ending with the escape character joined with the next (comments and blank
    lines between them skipped, as docker does)."""
    i, n = start, len(lines)
    while i < n:
        lineno, line = i + 1, lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = []
        while True:
            stripped = line.rstrip(" \t")
            if not stripped.endswith(escape):
                parts.append(line)
                break
            parts.append(stripped[:-1])
            while i < n and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1
            if i == n:
                break
            line = lines[i]
            i += 1
        yield lineno, "".join(parts)


def _flags(cmd, rest, where) -> tuple[dict, str]:
    """The leading `--name=value` options of an instruction, and the text after them."""
    flags = {}
    while rest.startswith("--"):
        word, _, after = rest.partition(" ")
        name, eq, value = word[2:].partition("=")
        if name not in FLAGS.get(cmd, ()):
            raise BuildError(f"{where}: {cmd} does not support the option --{name}")
        if not eq or not value:
            raise BuildError(f"{where}: {cmd} --{name} needs a value (--{name}=VALUE)")
        flags[name] = value
        rest = after.strip()
    return flags, rest


def json_form(text) -> list | None:
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None  # docker takes such text as the shell form
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


# -- substitution ------------------------------------------------------------------------------

def expand(text: str, env: dict, escape: str = "\\") -> str:
    """`text` as one word: variables replaced, quotes and escapes removed."""
    return _Expander(text, env, escape, split=False).run()


def expand_words(text: str, env: dict, escape: str = "\\") -> list[str]:
    """`text` split into words at unquoted blanks (those of unquoted variables too),
    each with variables replaced and quotes and escapes removed."""
    return _Expander(text, env, escape, split=True).run()


def split_raw(text: str, escape: str = "\\") -> list[str]:
    """`text` split at unquoted blanks, quotes and escapes kept (for `K=V` lists,
    whose values are expanded one by one)."""
    words, cur, quote, i = [], "", None, 0
    while i < len(text):
        c = text[i]
        if c == escape and quote != "'" and i + 1 < len(text):
            cur += text[i:i + 2]
            i += 2
            continue
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c.isspace():
            if cur:
                words.append(cur)
            cur = ""
            i += 1
            continue
        cur += c
        i += 1
    if cur:
        words.append(cur)
    return words


class _Expander:
    def __init__(self, text, env, escape, split):
        self.text, self.env, self.esc, self.split = text, env, escape, split
        self.words, self.cur, self.started = [], [], False

    def run(self):
        t, i = self.text, 0
        while i < len(t):
            c = t[i]
            if c == self.esc:
                if i + 1 < len(t):
                    self._add(t[i + 1], quoted=True)
                i += 2
            elif c == "'":
                j = t.find("'", i + 1)
                if j < 0:
                    raise BuildError(f"unterminated single quote in {t!r}")
                self._add(t[i + 1:j], quoted=True)
                i = j + 1
            elif c == '"':
                i = self._double(i + 1)
            elif c == "$":
                value, i = self._dollar(i)
                self._add(value, quoted=False)
            else:
                self._add(c, quoted=False)
                i += 1
        if not self.split:
            return "".join(self.cur)
        self._end_word()
        return self.words

    def _add(self, s, quoted):
        if not self.split or quoted:
            self.cur.append(s)
            self.started = True
            return
        for ch in s:
            if ch.isspace():
                self._end_word()
            else:
                self.cur.append(ch)
                self.started = True

    def _end_word(self):
        if self.started:
            self.words.append("".join(self.cur))
        self.cur, self.started = [], False

    def _double(self, i):
        t, buf = self.text, []
        while True:
            if i >= len(t):
                raise BuildError(f"unterminated double quote in {t!r}")
            c = t[i]
            if c == '"':
                self._add("".join(buf), quoted=True)
                return i + 1
            if c == self.esc and i + 1 < len(t) and t[i + 1] in ('"', "$", self.esc):
                buf.append(t[i + 1])
                i += 2
            elif c == "$":
                value, i = self._dollar(i)
                buf.append(value)
            else:
                buf.append(c)
                i += 1

    def _dollar(self, i):
        """The value of the variable reference at text[i] ('$') and where it ends."""
        t = self.text
        if t.startswith("${", i):
            m = _NAME.match(t, i + 2)
            if not m:
                raise BuildError(f"bad substitution in {t!r}")
            name, j = m.group(), m.end()
            if t.startswith("}", j):
                return self.env.get(name, ""), j + 1
            op = next((o for o in (":-", ":+", ":?", "-", "+", "?") if t.startswith(o, j)), None)
            if op is None:
                raise BuildError(f"bad substitution in {t!r}")
            end = self._closing_brace(j + len(op))
            word = _Expander(t[j + len(op):end], self.env, self.esc, split=False).run()
            return self._modifier(name, op, word), end + 1
        m = _NAME.match(t, i + 1)
        if not m:
            return "$", i + 1
        return self.env.get(m.group(), ""), m.end()

    def _closing_brace(self, i):
        t, depth = self.text, 0
        while i < len(t):
            if t[i] == self.esc:
                i += 2
                continue
            if t.startswith("${", i):
                depth += 1
                i += 1
            elif t[i] == "}":
                if depth == 0:
                    return i
                depth -= 1
            i += 1
        raise BuildError(f"missing '}}' in {t!r}")

    def _modifier(self, name, op, word):
        value = self.env.get(name)
        present = value is not None and (value != "" or ":" not in op)
        if op.endswith("-"):
            return value if present else word
        if op.endswith("+"):
            return word if present else ""
        if not present:
            raise BuildError(f"{name}: {word or 'is not set'}")
        return value
