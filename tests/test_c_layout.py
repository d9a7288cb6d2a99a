"""The C core's layout: its include graph has no cycle, nor has the graph of
calls between its files (a call to a function that another file defines); parking
stands apart from spawning (spawn.c calls park.c's child side; the zygote and a
pool's command I/O use spawn.h's public API only, and spawn.c calls none of
them); the layer unpacker stands in layers, each using only those below it."""
import collections
import os
import re

CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")


def _sources():
    for d in (CSRC, os.path.join(CSRC, "bin")):
        for name in sorted(os.listdir(d)):
            if name.endswith((".c", ".h")):
                with open(os.path.join(d, name)) as f:
                    yield name, f.read()


def _includes():
    return {name: set(re.findall(r'#include "([^"]+)"', text)) for name, text in _sources()}


def _code(text):
    """The text without its comments, strings and character constants."""
    return re.sub(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'',
                  " ", text, flags=re.S)


# a function defined at file scope and not static: its name (the return type
# before it on the line, the parameters up to the body's brace)
_DEFINITION = re.compile(r"^(?!static\b)[A-Za-z_][^\n;{}()=]*?\b(\w+)\s*\([^;{}]*?\)\s*\{", re.M)
_CALL = re.compile(r"\b(\w+)\s*\(")


def _unit(name):
    """A source and the header of the same name are one unit, named after the
    source; a header that no source is named after is a unit of its own."""
    stem, ext = os.path.splitext(name)
    if ext == ".h" and os.path.exists(os.path.join(CSRC, stem + ".c")):
        return stem + ".c"
    return name


def _uses(includes=True):
    """unit -> {unit: why}: the units whose function (the one definition of that
    name) it calls, and (includes) those it includes."""
    texts = dict(_sources())
    code = {name: _code(text) for name, text in texts.items()}
    defined = collections.defaultdict(set)
    for name, text in code.items():
        if name.endswith(".c"):
            for fn in _DEFINITION.findall(text):
                defined[fn].add(name)
    owner = {fn: names.pop() for fn, names in defined.items() if len(names) == 1}
    uses = collections.defaultdict(dict)
    for name, text in code.items():
        unit = _unit(name)
        for inc in re.findall(r'#include "([^"]+)"', texts[name]) if includes else ():
            target = _unit(os.path.basename(inc))
            if target != unit:
                uses[unit].setdefault(target, "#include \"%s\" in %s" % (inc, name))
        for fn in sorted(set(_CALL.findall(text)) if name.endswith(".c") else ()):
            target = owner.get(fn)
            if target and target != unit:
                uses[unit].setdefault(target, "%s() in %s" % (fn, name))
    return uses


def _find_cycle(graph):
    done, active = set(), []

    def visit(node):
        if node in active:
            return active[active.index(node):] + [node]
        if node in done:
            return None
        active.append(node)
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt)
            if cycle:
                return cycle
        active.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def test_files_do_not_call_each_other_in_a_circle():
    uses = _uses(includes=False)
    assert "tarread.c" in uses["unpack.c"]  # calls are seen: pyrt_tar_feed()
    cycle = _find_cycle(uses)
    assert not cycle, "circle: " + " -> ".join(
        "%s (%s)" % (a, uses[a][b]) for a, b in zip(cycle, cycle[1:])) + " -> " + cycle[-1]


# The layer unpacker, top to bottom: its API; the tar parser (the stream, then the
# headers' fields); the writers (the files' data, then the filesystem side); the
# failures all of them report and the buffers they keep. Each uses only files
# after it here (includes and calls); its shared types are in headers named
# after none of them (unpacker.h, unpack_types.h).
UNPACKER = ["unpack.c", "tarread.c", "tarheader.c", "unpackdata.c", "unpackfs.c",
            "unpackerr.c", "sbuf.c"]


def test_unpacker_layers_point_down():
    uses = _uses()
    for i, unit in enumerate(UNPACKER):
        assert unit in uses or unit == "sbuf.c", unit
        for target, why in uses.get(unit, {}).items():
            if target in UNPACKER:
                assert UNPACKER.index(target) > i, "%s uses %s upward: %s" % (unit, target, why)
    for header in ("unpacker.h", "unpack_types.h"):
        assert _unit(header) == header  # no source of that name
        for target, why in uses.get(header, {}).items():
            assert target not in UNPACKER[:-1], "%s uses %s: %s" % (header, target, why)
    # nothing below the API reaches it, not even for the public types
    for name, incs in _includes().items():
        if name not in ("unpack.c", "unpack.h"):
            assert "unpack.h" not in incs, name


def test_include_graph_has_no_cycle():
    cycle = _find_cycle(_includes())
    assert not cycle, "include cycle: " + " -> ".join(cycle)


def test_spawn_does_not_reach_into_the_pool_side():
    graph = _includes()
    assert not graph["spawn.c"] & {"zygote.h", "cmdio.h", "specpack.h"}
    assert "spawn.h" not in graph["park.h"] and "spawn.h" not in graph["park.c"]
    text = dict(_sources())
    for name in ("park.c", "cmdio.c"):
        assert not re.search(r"\bpyrt_spawn\w*\(", text[name]), name
    assert not re.search(r"\bpyrt_(zygote|io_run|unpark)\w*\(", text["spawn.c"])
