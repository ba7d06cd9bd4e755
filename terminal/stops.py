"""Where a bus validator is: its route and stop, from the driver's commands or a stop feed.

    parse_command(line, place)   a stdin command: "stop S", "route R" or "route R stop S"
    read_stop_feed(path)         a JSON or CSV file of stop changes (at, route, stop)
    place_at(feed, now)          the place of the last change at or before now
    StopFeed                     follows the feed file as it is rewritten

Only StopFeed reads a file; nothing here reads a clock.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from protocol.uplink.records import WORD
from terminal.card import Place
from terminal.frames import Watch


@dataclass(frozen=True)
class StopChange:
    at: datetime
    place: Place


def place_at(feed: Sequence[StopChange], now: datetime) -> Place | None:
    """The place of the last change at or before now (None if the feed starts later)."""
    current = None
    for change in sorted(feed, key=lambda c: c.at):
        if change.at > now:
            break
        current = change.place
    return current


def check_name(what: str, value: str) -> str:
    """A route or stop name the gateway takes in a tap record (protocol.uplink's rule: 1 to 64
    letters, digits or _ . : -), else ValueError: a tap journalled under another name would
    be refused at upload and its fare never cleared."""
    if not WORD.fullmatch(value):
        raise ValueError(f"a {what} is 1 to 64 letters, digits or _ . : - (not {value[:70]!r})")
    return value


def checked_place(route: str, stop: str) -> Place:
    return Place(check_name("route", route), check_name("stop", stop))


def parse_command(line: str, place: Place | None) -> Place | None:
    """A stdin command: "stop S", "route R" or "route R stop S". ValueError when it is not one."""
    words = line.split()
    route = place.route if place else None
    stop = place.stop if place else None
    if not words or len(words) % 2:
        raise ValueError(f"not a command: {line.strip()!r} (use: stop S | route R | route R stop S)")
    for key, value in zip(words[::2], words[1::2]):
        if key == "route":
            route = value
        elif key == "stop":
            stop = value
        else:
            raise ValueError(f"unknown command word {key!r} (use: stop S | route R | route R stop S)")
    if route is None or stop is None:
        raise ValueError("set both a route and a stop")
    return checked_place(route, stop)


def read_stop_feed(path: Path) -> list[StopChange]:
    """A JSON list of {"at", "route", "stop"} or a CSV with a header at,route,stop; times ISO 8601 UTC."""
    text = Path(path).read_text(encoding="utf-8")
    rows = json.loads(text) if text.lstrip().startswith("[") else list(csv.DictReader(text.splitlines()))
    changes = []
    for n, row in enumerate(rows, 1):
        try:
            at = datetime.fromisoformat(str(row["at"]).replace("Z", "+00:00"))
            at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
            changes.append(StopChange(at, checked_place(str(row["route"]), str(row["stop"]))))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"entry {n}: needs at (ISO 8601), route and stop ({e})") from None
    return changes


class StopFeed:
    """The stop feed file, read again whenever it changes; a file that does not parse is
    said (out) and the last good feed kept."""

    def __init__(self, path: Path):
        self.path, self.changes, self._watch = path, [], Watch()

    def place(self, now: datetime, out: Callable[[str], None]) -> Place | None:
        if self._watch.changed(self.path):
            try:
                self.changes = read_stop_feed(self.path)
            except (OSError, ValueError) as e:
                out(f"stop feed {self.path}: {e}")
        return place_at(self.changes, now) if self.changes else None

    def reread(self) -> None:
        """Read the file at the next look even if it seems unchanged (SIGUSR1)."""
        self._watch.forget(self.path)
