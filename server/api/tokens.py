"""The opaque tokens the API hands out and reads back: page tokens of the listings and the
cursor of ListStudyChanges. A token this server did not issue is INVALID_ARGUMENT."""

from __future__ import annotations

import base64
import math

from tunewire.server.domain.errors import InvalidArgument
from tunewire.server.domain.limits import MAX_STEP, MAX_TRIAL_ID, NAME_PATTERN
from tunewire.server.service.changes import ChangeCursor

# Server clock readings a cursor may hold (seconds since 1970; up to the year 33658).
_MAX_CURSOR_TIME = 1e12
_CURSOR_VERSION = "c1"


def page_token(last: str | None) -> str:
    """The token of the page after the one that ended at `last` (empty: no more pages)."""
    if last is None:
        return ""
    return base64.urlsafe_b64encode(last.encode()).decode()


def _decoded(token: str, what: str = "page_token") -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument(f"{what} is not one this server issued") from None


def from_page_token(token: str) -> str:
    """The study name a ListStudies page starts after ("" for the first page)."""
    if not token:
        return ""
    name = _decoded(token)
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidArgument("page_token is not one this server issued")
    return name


def from_trial_page_token(token: str) -> int:
    """The trial id a ListTrials page starts after (0 for the first page)."""
    if not token:
        return 0
    text = _decoded(token)
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= MAX_TRIAL_ID:
        raise InvalidArgument("page_token is not one this server issued")
    return int(text)


def change_cursor(cursor: ChangeCursor) -> str:
    """The text of a ListStudyChanges cursor."""
    fields = (_CURSOR_VERSION, repr(cursor.since), cursor.first_id, cursor.after_step)
    text = ":".join(map(str, (*fields, repr(cursor.started))))
    return base64.urlsafe_b64encode(text.encode()).decode()


def from_change_cursor(token: str) -> ChangeCursor:
    """The cursor a ListStudyChanges call goes on from (empty: the whole study)."""
    if not token:
        return ChangeCursor()
    parts = _decoded(token, "cursor").split(":")
    try:
        version, since, first_id, after_step, started = parts
        cursor = ChangeCursor(float(since), int(first_id), int(after_step), float(started))
    except ValueError:
        raise InvalidArgument("cursor is not one this server issued") from None
    times_ok = all(
        math.isfinite(t) and 0 <= t <= _MAX_CURSOR_TIME for t in (cursor.since, cursor.started)
    )
    if (
        version != _CURSOR_VERSION
        or not times_ok
        or not 0 <= cursor.first_id <= MAX_TRIAL_ID
        or not -1 <= cursor.after_step <= MAX_STEP
    ):
        raise InvalidArgument("cursor is not one this server issued")
    return cursor
