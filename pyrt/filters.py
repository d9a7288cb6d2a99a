"""docker's list filters, as images, containers and volumes take them."""
from __future__ import annotations

from pyrt.errors import InvalidArgument


def wanted_filters(filters, known, what: str) -> dict:
    """The docker SDK's `filters` ({name: value or [values]}) as {name: [values]};
    a name not in `known` is an error naming the `what` filters."""
    wanted = {k: v if isinstance(v, (list, tuple)) else [v] for k, v in (filters or {}).items()}
    unknown = set(wanted) - set(known)
    if unknown:
        raise InvalidArgument(f"unknown {what} filter {sorted(unknown)[0]!r} (known: {', '.join(known)})")
    return wanted


def all_labels_match(labels: dict, wanted) -> bool:
    """docker's label filters: each of `wanted` ("key" or "key=value") holds."""
    for item in wanted:
        key, eq, value = str(item).partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True
