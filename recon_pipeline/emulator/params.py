"""Stripe's form encoding: `metadata[k]=v`, `recurring[interval]=month`, `ids[]=a`, `ids[0]=a`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


def decode(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Nested dicts and lists from flat form pairs, in Stripe's bracket notation."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if not match:
            root[key] = value
            continue
        path = [match.group(1), *_PART.findall(match.group(2))]
        node: Any = root
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if part == "":  # `ids[]=a`: append
                node.setdefault("", []).append(value) if isinstance(node, dict) else None
                break
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if set(node) == {""}:
        return [_listify(v) for v in node[""]]
    if node and all(k.isdigit() for k in node):
        return [_listify(node[k]) for k in sorted(node, key=int)]
    return {k: _listify(v) for k, v in node.items()}
