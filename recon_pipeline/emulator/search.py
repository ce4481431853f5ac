"""Stripe's search query language, for `GET /v1/products/search` and `GET /v1/prices/search`.

As docs.stripe.com/search describes it:

- a query is up to 10 clauses `field:value`, joined by spaces or `AND`, or by `OR` (never
  both in one query; no parentheses); `AND`/`OR` in any case;
- `:` is an exact match, case-insensitive; on a text field (`name`, `description`, `url`,
  `lookup_key`, `product`) it matches the words given, in that order, anywhere in the value
  (`name:"one two"` finds "One two three");
- `~` is a substring match, on text fields only, of at least 3 characters;
- `-` before a clause negates it; `field:null` matches an empty field, `-field:null` a set one;
- `metadata["key"]:"value"` (or with single quotes) matches a metadata value, and
  `-metadata["key"]:null` every object that has the key;
- values are quoted ("..." or '...', a backslash escaping a quote), numbers need not be;
- `>`, `<`, `>=`, `<=` compare numeric fields, and products and prices have none.

Results come newest first, `limit` (default 10) at a time; `next_page` is the cursor of the
next page (`page=`), and `expand[]=total_count` adds the number of matches.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from recon_pipeline.emulator import errors

TOKEN, TEXT = "token", "text"  # exact match only; words and substrings
FIELDS: dict[str, dict[str, str]] = {
    "product": {"active": TOKEN, "description": TEXT, "metadata": TOKEN, "name": TEXT, "shippable": TOKEN, "url": TEXT},
    "price": {"active": TOKEN, "currency": TOKEN, "lookup_key": TEXT, "metadata": TOKEN, "product": TEXT, "type": TOKEN},
}
MAX_CLAUSES = 10
MIN_SUBSTRING = 3
UNPARSABLE = (
    "We were unable to parse your search query. Try using the format `metadata[\"key\"]:\"value\"` to query for metadata "
    "or key:\"value\" to query for other fields."
)

_CLAUSE = re.compile(
    r"""(?P<negated>-)?
        (?P<field>[A-Za-z_]+)
        (?:\[\s*(?P<key>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*\])?
        (?P<op>>=|<=|:|~|>|<)
        (?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s"']+)""",
    re.VERBOSE,
)
_JOIN = re.compile(r"\s+(?:(AND|OR)\s+)?", re.IGNORECASE)
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Clause:
    field: str
    key: str | None  # metadata's key
    op: str
    value: str | None  # None: the `null` token
    negated: bool


def _unquoted(text: str) -> str:
    if text[0] in "\"'":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _unparsable() -> errors.StripeApiError:
    return errors.StripeApiError(400, UNPARSABLE, param="query")


def parse(query: str, kind: str) -> tuple[list[Clause], str]:
    """The query's clauses and how they combine ("and" or "or"), or Stripe's 400."""
    clauses: list[Clause] = []
    joins: set[str] = set()
    position, text = 0, query.strip()
    while True:
        match = _CLAUSE.match(text, position)
        if match is None:
            raise _unparsable()
        field = match["field"]
        if field not in FIELDS[kind] or (match["key"] is not None) != (field == "metadata"):
            if field not in FIELDS[kind]:
                raise errors.StripeApiError(
                    400,
                    f"Field `{field}` is an unsupported search field for resource `{kind}s`. "
                    f"See http://stripe.com/docs/search#query-fields-for-{kind}s for a list of supported fields.",
                    param="query",
                )
            raise _unparsable()
        value = match["value"]
        literal = None if value.lower() == "null" and value[0] not in "\"'" else _unquoted(value)
        clause = Clause(field, _unquoted(match["key"]) if match["key"] else None, match["op"], literal, bool(match["negated"]))
        if clause.op in (">", "<", ">=", "<=") or (clause.op == "~" and (FIELDS[kind][field] != TEXT or literal is None or len(literal) < MIN_SUBSTRING)):
            raise _unparsable()  # no numeric field here; `~` on text only, of 3 characters or more
        clauses.append(clause)
        position = match.end()
        if position == len(text):
            break
        join = _JOIN.match(text, position)
        if join is None or join.end() == len(text):
            raise _unparsable()
        joins.add((join.group(1) or "and").lower())
        position = join.end()
    if len(clauses) > MAX_CLAUSES or len(joins) > 1:
        raise _unparsable()  # at most 10 clauses; AND and OR never together
    return clauses, joins.pop() if joins else "and"


def _shown(value: Any) -> str | None:
    """A field's value as search compares it: text, booleans as true/false, empty as None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _holds(found: str | None, clause: Clause, kind: str) -> bool:
    if clause.value is None:
        return found is None
    if found is None:
        return False
    wanted, have = clause.value.lower(), found.lower()
    if clause.op == "~":
        return wanted in have
    if clause.field != "metadata" and FIELDS[kind][clause.field] == TEXT:
        words, among = _words(wanted), _words(have)
        return bool(words) and any(among[i : i + len(words)] == words for i in range(len(among) - len(words) + 1))
    return wanted == have


def matcher(query: str, kind: str) -> Callable[[dict[str, Any]], bool]:
    """Whether an object (as stored) matches the query."""
    clauses, join = parse(query, kind)

    def one(obj: dict[str, Any], clause: Clause) -> bool:
        found = _shown((obj.get("metadata") or {}).get(clause.key)) if clause.field == "metadata" else _shown(obj.get(clause.field))
        return _holds(found, clause, kind) != clause.negated

    combine = all if join == "and" else any
    return lambda obj: combine(one(obj, clause) for clause in clauses)


@dataclass
class SearchPage:
    data: list[dict[str, Any]]
    has_more: bool
    next_page: str | None
    total_count: int


def page_of(objects: Iterable[dict[str, Any]], query: str, kind: str, limit: int, page: str | None) -> SearchPage:
    """One page of the objects (newest first) that match; `page`: a `next_page` this gave."""
    if not 1 <= limit <= 100:
        raise errors.invalid("limit", f"Invalid integer: {limit}. Must be between 1 and 100.", "parameter_invalid_integer")
    start = _offset(page, query) if page else 0
    matches = matcher(query, kind)
    found = [obj for obj in objects if matches(obj)]
    data = found[start : start + limit]
    more = start + limit < len(found)
    return SearchPage(data, more, _cursor(start + limit, query) if more else None, len(found))


def _cursor(offset: int, query: str) -> str:
    return "page_" + base64.urlsafe_b64encode(f"{offset}:{query}".encode()).decode().rstrip("=")


def _offset(page: str, query: str) -> int:
    """Where a `next_page` cursor starts; refused unless this search (the same query) gave it."""
    body = page.removeprefix("page_")
    try:
        offset, _, of = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode().partition(":")
        if of == query:
            return int(offset)
    except ValueError:
        pass
    raise errors.invalid("page", f"Invalid page: {page!r} is not a `next_page` of this search (the same query).")
