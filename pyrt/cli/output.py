"""How listings and inspect print: an aligned table, JSON, or a template as docker
takes them with --format: `{{.Names}}`, `table {{.ID}}\\t{{.Status}}` (a table of
those columns), `{{json .}}` (a row as JSON), `{{json .Labels}}`, `{{.State.Status}}`
(a path into nested objects). Rows are dicts with docker's field names. Filters
(-f KEY=VALUE) are parsed here too."""
from __future__ import annotations

import json
import re

from pyrt.errors import InvalidArgument

_FIELD = re.compile(r"{{\s*(json\s+)?\.((?:\w+(?:\.\w+)*)?)\s*}}")
_LEFTOVER = re.compile(r"{{.*?}}")


def table(headers, rows) -> str:
    """Columns left-aligned, three spaces apart (trailing spaces dropped)."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [list(headers)] + rows)


def print_rows(rows: list[dict], fmt: str, columns) -> None:
    """`columns`: [(field, header)] of the default table."""
    if fmt in (None, "", "table"):
        print(table([h for _, h in columns], [[r[f] for f, _ in columns] for r in rows]))
    elif fmt == "json":
        print(json.dumps(rows, indent=2))
    else:
        print_template(rows, fmt, dict(columns))


def print_template(rows: list[dict], template: str, headers: dict) -> None:
    template = template.replace("\\t", "\t").replace("\\n", "\n")
    as_table = template.startswith("table ")
    if as_table:
        template = template[len("table "):]
    _check_template(template)
    lines = [_render(template, r) for r in rows]
    if not as_table:
        for line in lines:
            print(line)
        return
    head = _FIELD.sub(lambda m: headers.get(m.group(2), m.group(2).upper()), template)
    cells = [line.split("\t") for line in [head] + lines]
    print(table(cells[0], cells[1:]))


def print_inspected(objects: list, template: str | None) -> None:
    """`inspect`: the objects as a JSON list, or the template once per object."""
    if not template:
        print(json.dumps(objects, indent=4))
        return
    template = template.replace("\\t", "\t").replace("\\n", "\n")
    _check_template(template)
    for obj in objects:
        print(_render(template, obj))


def _check_template(template: str) -> None:
    left = _LEFTOVER.search(_FIELD.sub("", template))
    if left:
        raise InvalidArgument(f"--format: unsupported template action {left.group(0)!r} "
                              "(use {{.Field}}, {{.Field.Sub}}, {{json .}} or {{json .Field}})")


def _render(template: str, row: dict) -> str:
    def value(m):
        v = row
        for key in m.group(2).split(".") if m.group(2) else ():
            if not isinstance(v, dict) or key not in v:
                known = ", ".join(sorted(v)) if isinstance(v, dict) else "none"
                raise InvalidArgument(f"--format: no field {m.group(2)!r} (at {key!r}; fields there: {known})")
            v = v[key]
        if m.group(1):
            return json.dumps(v)
        if isinstance(v, bool):
            return "true" if v else "false"  # as Go prints them
        return "<no value>" if v is None else str(v) if not isinstance(v, (dict, list)) else json.dumps(v)
    return _FIELD.sub(value, template)


def parse_filters(items, known) -> dict:
    """-f KEY=VALUE options as {key: [values]}; keys outside `known` are refused."""
    out: dict = {}
    for item in items or ():
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or key not in known:
            raise InvalidArgument(f"invalid filter {item!r}: use KEY=VALUE with KEY one of {', '.join(known)}")
        out.setdefault(key, []).append(value)
    return out
