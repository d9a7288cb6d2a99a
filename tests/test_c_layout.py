"""The C core's layout: its include graph has no cycle, and parking stands apart
from spawning (spawn.c calls park.c's child side; the zygote and a pool's command
I/O use spawn.h's public API only, and spawn.c calls none of them)."""
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


def test_include_graph_has_no_cycle():
    graph = _includes()
    done, active = set(), []

    def visit(node):
        if node in active:
            raise AssertionError("include cycle: " + " -> ".join(active[active.index(node):] + [node]))
        if node in done:
            return
        active.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        active.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)


def test_spawn_does_not_reach_into_the_pool_side():
    graph = _includes()
    assert not graph["spawn.c"] & {"zygote.h", "cmdio.h", "specpack.h"}
    assert "spawn.h" not in graph["park.h"] and "spawn.h" not in graph["park.c"]
    text = dict(_sources())
    for name in ("park.c", "cmdio.c"):
        assert not re.search(r"\bpyrt_spawn\w*\(", text[name]), name
    assert not re.search(r"\bpyrt_(zygote|io_run|unpark)\w*\(", text["spawn.c"])
