"""A command line parsed without argparse, for the verbs a user runs most (`pyrt
run`): importing argparse (re, enum, gettext) and building its parser costs more
than starting a container.

The options are not written twice: the same functions that declare them to
argparse (pyrt.cli.main.declare_globals, declare_run) declare them here to a
recorder. The result is the Namespace argparse would give, or None whenever the
command line uses anything this parser does not do exactly as argparse does
(help, --version, abbreviated or unknown options, joined short options with
values, values that look like options, a bad choice or number, an action it does
not know): argparse then parses it, with its messages and exit statuses."""
from __future__ import annotations

REMAINDER = "..."  # argparse.REMAINDER


class Namespace:
    """What argparse.Namespace is for the commands: attributes, compared by value."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)

    def __eq__(self, other):
        return vars(self) == vars(other)

    def __contains__(self, key):
        return key in self.__dict__

    def __repr__(self):
        return "Namespace(" + ", ".join(f"{k}={v!r}" for k, v in sorted(vars(self).items())) + ")"


class _Option:
    __slots__ = ("dest", "action", "default", "type", "choices")

    def __init__(self, dest, action, default, type, choices):
        self.dest, self.action, self.default, self.type, self.choices = dest, action, default, type, choices


class Recorder:
    """Stands in for an argparse parser: records add_argument and set_defaults."""

    _KNOWN = {"action", "default", "type", "choices", "dest", "help", "metavar", "nargs"}

    def __init__(self):
        self.options: dict[str, _Option] = {}
        self.defaults: dict = {}
        self.remainder = None  # the dest of a positional taking the rest (nargs=REMAINDER)
        self.usable = True     # False once something was declared that this parser does not do

    def add_argument(self, *flags, **kw):
        action = kw.get("action", "store")
        if set(kw) - self._KNOWN or action not in ("store", "store_true", "append"):
            self.usable = False
            return
        if not flags[0].startswith("-"):
            if kw.get("nargs") == REMAINDER and self.remainder is None and len(flags) == 1:
                self.remainder = kw.get("dest", flags[0])
            else:
                self.usable = False
            return
        if kw.get("nargs") is not None:
            self.usable = False
            return
        long = [f for f in flags if f.startswith("--")]
        dest = kw.get("dest") or (long[0] if long else flags[0]).lstrip("-").replace("-", "_")
        default = kw.get("default", False if action == "store_true" else None)
        if isinstance(default, str) and kw.get("type") is not None:
            self.usable = False  # argparse would convert it
            return
        opt = _Option(dest, action, default, kw.get("type"), kw.get("choices"))
        for f in flags:
            self.options[f] = opt

    def set_defaults(self, **kw):
        self.defaults.update(kw)


def _is_negative_number(s: str) -> bool:
    """What argparse takes for a value, not an option ('-1', '-.5'; its regex
    '^-\\d+$|^-\\d*\\.\\d+$')."""
    body = s[1:]
    if body.isdigit() and body.isascii():
        return True
    whole, dot, frac = body.partition(".")
    return bool(dot) and (not whole or (whole.isdigit() and whole.isascii())) and frac.isdigit() and frac.isascii()


class _Decline(Exception):
    pass


def _value(opt: _Option, text: str):
    if opt.type is not None:
        try:
            text = opt.type(text)
        except (TypeError, ValueError):
            raise _Decline from None
    if opt.choices is not None and text not in opt.choices:
        raise _Decline
    return text


def _options(argv, i, rec: Recorder, ns: dict):
    """Consume the options from argv[i]; returns the index of the first argument that
    is not one (or len(argv))."""
    while i < len(argv):
        word = argv[i]
        if word == "--" or not word.startswith("-") or word == "-":
            return i
        name, eq, explicit = word.partition("=") if word.startswith("--") else (word, "", "")
        opt = rec.options.get(name)
        if opt is None:
            # -it: joined short options, all of them flags
            if word.startswith("--") or len(word) < 3:
                raise _Decline
            flags = [rec.options.get("-" + c) for c in word[1:]]
            if any(f is None or f.action != "store_true" for f in flags):
                raise _Decline
            for f in flags:
                ns[f.dest] = True
            i += 1
            continue
        i += 1
        if opt.action == "store_true":
            if eq:
                raise _Decline
            ns[opt.dest] = True
            continue
        if eq:
            text = explicit
        else:
            if i >= len(argv):
                raise _Decline
            text = argv[i]
            if text.startswith("-") and not _is_negative_number(text):
                raise _Decline  # argparse: "expected one argument" (or a value it reads otherwise)
            i += 1
        value = _value(opt, text)
        if opt.action == "append":
            ns[opt.dest] = list(ns[opt.dest] or ()) + [value]
        else:
            ns[opt.dest] = value
    return i


def parse(argv, verb: str, verb_dest: str, declare_globals, declare_verb):
    """The Namespace of `argv` (`[GLOBAL OPTIONS] VERB [OPTIONS] [REST...]`) when VERB
    is `verb` and this parser reads it exactly as argparse would; else None."""
    top, sub = Recorder(), Recorder()
    declare_globals(top)
    declare_verb(sub)
    if not (top.usable and sub.usable and sub.remainder):
        return None
    ns = {o.dest: o.default for o in top.options.values()}
    ns.update(top.defaults)
    try:
        i = _options(argv, 0, top, ns)
        if i >= len(argv) or argv[i] != verb:
            return None
        ns[verb_dest] = verb
        for o in sub.options.values():
            ns[o.dest] = list(o.default) if isinstance(o.default, list) else o.default
        ns.update(sub.defaults)
        i = _options(argv, i + 1, sub, ns)
    except _Decline:
        return None
    ns[sub.remainder] = list(argv[i:])
    return Namespace(**ns)
