"""Reference-data sync: the issuer keys, deny-list and fare rules a desk decides with.

    load_reference(journal, rules_file)   what the journal cached between runs (a local rules
                                           file until the gateway's rules are downloaded)
    refresh_reference(ref, client, ...)   download keys, the deny-list delta and fare rules;
                                           cache each in the journal
    Refresher                              the downloads on a thread of their own
    Sync                                   a desk's reference data and whether it is online

The first download is the desk's own, before its first card; then the Refresher downloads
every refresh_every seconds, so a gateway that does not answer (a dead zone that swallows
packets: each try waits out its timeout) never keeps a rider waiting, and the desk takes
each result between cards. Offline, the cached data stay in use. On a simulated clock
(`background=False`) there is no such thread: the desk downloads between cards when its
clock says a refresh is due.
"""
from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from protocol import certs, fares
from protocol.uplink import Client, GatewayError, GatewayRefused, reference
from terminal.journal import Journal, JournalError
from terminal.loop import Service

log = logging.getLogger("terminal")


@dataclass
class Reference:
    """What a desk decides with, cached in the journal between runs."""
    issuer_keys: dict[bytes, bytes] = field(default_factory=dict)
    deny: frozenset[str] = frozenset()
    deny_version: int = 0
    rules: fares.FareRules | None = None
    refreshed_at: datetime | None = None

    @property
    def rules_version(self) -> int | None:
        return self.rules.version if self.rules is not None else None


def load_reference(journal: Journal, fallback_rules: Path | None) -> Reference:
    ref = Reference()
    keys = journal.load("issuer_keys")
    if keys:
        ref.issuer_keys = {bytes.fromhex(k): bytes.fromhex(v) for k, v in keys[0].items()}
    deny = journal.load("deny_list")
    if deny:
        ref.deny, ref.deny_version = frozenset(deny[0]["entries"]), int(deny[0]["version"])
    rules = journal.load("fare_rules")
    if rules:
        ref.rules = reference.fare_rules(rules[0])
    elif fallback_rules is not None:
        ref.rules = reference.fare_rules(json.loads(Path(fallback_rules).read_text(encoding="utf-8")))
    refreshed = journal.load("refreshed_at")
    if refreshed:
        ref.refreshed_at = datetime.fromtimestamp(refreshed[0], timezone.utc)
    return ref


def refresh_reference(ref: Reference, client: Client, journal: Journal | None, now: datetime
                      ) -> tuple[Reference, JournalError | None]:
    """Download keys, the deny-list delta and fare rules; cache each in the journal. The new
    reference data, and the JournalError that kept it from being cached (it is used anyway).
    Raises GatewayError when the gateway cannot be reached (the old data stays)."""
    issuer_keys = reference.issuer_keys(client.get(reference.KEYS_PATH))
    deny, version = reference.apply_deny_delta(ref.deny, ref.deny_version,
                                               client.get(reference.deny_list_path(ref.deny_version)))
    rules, rules_doc = ref.rules, None
    try:
        rules_doc = client.get(reference.FARE_RULES_PATH)
        rules = reference.fare_rules(rules_doc)
    except GatewayRefused as e:
        if e.status != 404:
            raise
    except ValueError:  # rules that do not parse: keep the last good ones
        rules_doc = None
    try:
        if journal is None:
            raise JournalError("the journal is not open")
        journal.save("issuer_keys", {k.hex(): v.hex() for k, v in issuer_keys.items()}, now)
        journal.save("deny_list", {"version": version, "entries": sorted(deny)}, now)
        if rules_doc is not None:
            journal.save("fare_rules", rules_doc, now)
        journal.save("refreshed_at", int(now.timestamp()), now)
        uncached = None
    except JournalError as e:
        uncached = e
    return Reference(issuer_keys, deny, version, rules, now), uncached


class Refresher:
    """Calls download(journal) on a thread of its own, every `every` seconds or when poked,
    and queues each result for the card loop. The thread has its own journal connection."""

    def __init__(self, download: Callable[[Journal | None], object], every: float, journal_path: Path,
                 terminal_id: bytes):
        self.download, self.every = download, every
        self.journal_path, self.terminal_id = journal_path, terminal_id
        self.results: queue.Queue = queue.Queue()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="refresher", daemon=True)

    def start(self) -> Refresher:
        self._thread.start()
        return self

    def poke(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        journal = None
        try:
            while True:
                self._wake.wait(self.every)
                self._wake.clear()
                if self._stop.is_set():
                    return
                try:
                    journal = journal or Journal(self.journal_path, self.terminal_id)
                except JournalError:
                    journal = None  # downloaded all the same; caching it is said to have failed
                self.results.put(self.download(journal))
        finally:
            if journal is not None:
                journal.close()


class Sync:
    """A desk's reference data (`ref`), kept fresh while it runs, and whether the gateway
    answered the last download (`online`). Issuer keys given at start (--issuer-key) are
    trusted besides any downloaded."""

    def __init__(self, journal: Journal, *, client: Client | None, every: float, clock: Callable[[], datetime],
                 out: Callable[[str], None], service: Service, issuer_keys: tuple[bytes, ...] = (),
                 rules_file: Path | None = None, background: bool = True):
        self.journal, self.client, self.every, self.background = journal, client, every, background
        self.clock, self.out, self.service = clock, out, service
        self._provisioned = {certs.key_id(k): k for k in issuer_keys}
        self.ref = load_reference(journal, rules_file)
        self.ref.issuer_keys = {**self.ref.issuer_keys, **self._provisioned}
        self.online = False
        self.refresher: Refresher | None = None  # the background download, while the desk runs
        self._next_refresh: datetime | None = None  # None: now

    def refresh(self) -> bool:
        """Download the reference data now (this thread waits for the gateway); True if online."""
        if self.client is None:
            return False
        return self.take(self.download(self.journal))

    def download(self, journal: Journal | None):
        """A refresh's result: (Reference, JournalError or None), or the exception that ended it."""
        try:
            return refresh_reference(self.ref, self.client, journal, self.clock())
        except (GatewayError, ValueError, KeyError, TypeError) as e:
            return e
        except Exception as e:  # whatever else: logged with its trace, the old data stays
            log.exception("refreshing the reference data failed")
            return e

    def take(self, result) -> bool:
        """Use a refresh's result (download); True if online."""
        if isinstance(result, Exception):
            if self.online:
                self.out(f"gateway unreachable, working offline: {result}")
            self.online = False
            return False
        self.ref, uncached = result
        self.ref.issuer_keys = {**self.ref.issuer_keys, **self._provisioned}
        if uncached is not None:  # used now, not cached for a restart
            self.service.report("journal", str(uncached))
        self.online = True
        return True

    @contextlib.contextmanager
    def running(self):
        """While a desk's loop runs: with a gateway, download once now, before the first card;
        then in the background."""
        if self.client is not None and self.refresher is None:
            self.refresh()
            if self.background:
                self.refresher = Refresher(self.download, self.every, self.journal.path,
                                           bytes.fromhex(self.journal.terminal_id)).start()
            else:  # the next download when the desk's clock says so (keep_fresh)
                self._next_refresh = self.clock() + timedelta(seconds=self.every)
        try:
            yield self
        finally:
            if self.refresher is not None:
                self.refresher.stop()
                self.refresher = None

    def keep_fresh(self) -> None:
        """Between cards: take what the background refresher downloaded; without one, refresh
        when due."""
        if self.refresher is not None:
            while not self.refresher.results.empty():
                self.take(self.refresher.results.get_nowait())
        elif self._next_refresh is None or self.clock() >= self._next_refresh:
            self.refresh()
            self._next_refresh = self.clock() + timedelta(seconds=self.every)

    def clock_jumped(self) -> None:
        """The next refresh is now."""
        self._next_refresh = None
        if self.refresher is not None:
            self.refresher.poke()
