"""Read-only SQL access for the Streamlit apps: one connection, cached results.

Every query goes through `run()`: parameterised SQL from `analytics.queries`, the
result cached with a ttl, and a missing relation (marts not built yet, an ops table
from a later migration) reported as `Missing` instead of an exception, so pages can
show what to do rather than a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd
import sqlalchemy as sa
import streamlit as st
from sqlalchemy.exc import DBAPIError, OperationalError

from analytics.queries import Query
from analytics.settings import QUERY_TTL_SECONDS, sql_url

__all__ = ["Missing", "Unavailable", "run"]

logger = logging.getLogger(__name__)

# PostgreSQL error codes meaning "this relation is not there (yet)" for the reader.
_MISSING = {
    "42P01": "relation does not exist",
    "3F000": "schema does not exist",
    "42703": "column does not exist",
    "42501": "permission denied",
}


@dataclass(frozen=True)
class Missing:
    """The query's relations are absent or unreadable; `detail` is PostgreSQL's message."""

    query: str
    relations: tuple[str, ...]
    detail: str
    code: str = "42P01"


@dataclass(frozen=True)
class Unavailable:
    """The database cannot be reached."""

    detail: str


class _Absent(Exception):
    """Raised inside the cache so that failures are never cached."""

    def __init__(self, detail: str, unavailable: bool = False, code: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.unavailable = unavailable
        self.code = code


def _first_line(exc: DBAPIError) -> str:
    return (str(exc.orig).strip().splitlines() or ["?"])[0]


def _frame(rows: Sequence[Any], columns: list[str]) -> pd.DataFrame:
    """Rows as a frame; PostgreSQL numerics (Decimal) become floats for charts."""
    frame = pd.DataFrame([tuple(r) for r in rows], columns=columns)
    for column in frame.columns:
        if frame[column].dtype == object and any(
            isinstance(v, Decimal) for v in frame[column].head(50)
        ):
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


@st.cache_data(ttl=QUERY_TTL_SECONDS, max_entries=512, show_spinner=False)
def _cached(url: str, sql: str, params: tuple[tuple[str, Any], ...]) -> pd.DataFrame:
    # One SQLConnection (a pooled SQLAlchemy engine) per URL, kept by Streamlit.
    engine = st.connection("sql", type="sql", url=url, pool_pre_ping=True).engine
    try:
        with engine.connect() as conn:
            bound = {k: list(v) if isinstance(v, tuple) else v for k, v in params}
            result = conn.execute(sa.text(sql), bound)
            return _frame(result.fetchall(), list(result.keys()))
    except OperationalError as exc:
        raise _Absent(_first_line(exc), unavailable=True) from None
    except DBAPIError as exc:
        code = getattr(exc.orig, "pgcode", None)
        if code in _MISSING:
            raise _Absent(_first_line(exc), code=code) from None
        raise


def run(query: Query, **params: Any) -> pd.DataFrame | Missing | Unavailable:
    """The query's rows, or why there are none to show (never raises for absent marts)."""
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))
    try:
        return _cached(sql_url(), query.sql, frozen)
    except _Absent as absent:
        if absent.unavailable:
            logger.warning("database unavailable: %s", absent.detail)
            return Unavailable(absent.detail)
        return Missing(query.name, query.relations, absent.detail, absent.code)
