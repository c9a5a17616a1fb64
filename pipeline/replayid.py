"""Which error a replay copy stands for: the one rule every count and every story uses.

``heal backfill --replay`` re-publishes an error under the id ``<its id>~replay-<token>``
(``producers/backfill.py``), so a replay of a replay is ``<id>~replay-T1~replay-T2``. The
error a copy stands for (its *original*) is the id up to the first ``~replay-``.

Event ids and tags are untrusted input, so the rule is chosen so that a hostile event can
change no other error's numbers: an error whose own outcome (or lookup) is recorded always
counts with that record, and a copy counts only when its original has none (it was trimmed
before heal recorded it), and then once for all copies of it. An event that names itself a
copy of another error therefore hides at most itself; it never replaces the other's outcome,
and many of them count as one.
"""

from __future__ import annotations

#: what a replay puts between the original's id and its token
REPLAY_MARK = "~replay-"


def original_id(error_id: str) -> str:
    """The error ``error_id`` stands for: itself, or the original of a replay copy."""
    return error_id.split(REPLAY_MARK, 1)[0]


def replay_of(error_id: str) -> str | None:
    """The original of a replay copy, or None for an error that is no copy."""
    return original_id(error_id) if REPLAY_MARK in error_id else None


def sql_original(column: str) -> str:
    """SQL for :func:`original_id` of ``column`` (a fixed column name, never input)."""
    return f"split_part({column}, '{REPLAY_MARK}', 1)"


def sql_counted(alias: str, table: str) -> str:
    """SQL condition: the row ``alias`` of ``table`` (which has ``error_id``) counts in the
    operator's numbers: it is no replay copy, or no row of its original exists."""
    return (f"(strpos({alias}.error_id, '{REPLAY_MARK}') = 0 OR NOT EXISTS ("
            f"SELECT 1 FROM {table} r_ WHERE r_.error_id = {sql_original(alias + '.error_id')}))")
