"""Argument parsing shared by the streaming commands: one-line errors, exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn

__all__ = ["ArgumentParser", "iso_timestamp", "number"]


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line and exits 2, without the usage wall."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see --help)\n")
        raise SystemExit(2)


def number(
    kind: type, low: float, high: float | None = None, strict: bool = False
) -> Callable[[str], Any]:
    """An argparse type: `kind` within [low, high] (or (low, high] when strict)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value < low or (strict and value == low) or (high is not None and value > high):
            bound = f"> {low}" if strict else f">= {low}"
            if high is not None:
                bound += f" and <= {high}"
            raise argparse.ArgumentTypeError(f"{text} must be {bound}")
        return value

    return parse


def iso_timestamp(text: str) -> datetime:
    """An argparse type: an ISO-8601 timestamp that carries its offset."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 timestamp") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs an offset, e.g. {text}+00:00")
    return moment
