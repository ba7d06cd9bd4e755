"""Uploads the journal to the gateway: oldest first, in batches, retried with backoff.

A batch is the oldest unsent journal rows (500 by default): its taps sent as one POST
/v1/taps, its sales (a till's, protocol.uplink.SaleRecord) as one POST /v1/sales. The
gateway answers for each tap id (accepted, duplicate or rejected with a reason) and
only then are those rows marked sent, in one journal transaction. A validator killed
between the gateway's commit and that mark sends the batch again at restart; the
gateway deduplicates by tap id, so nothing is lost and nothing counts twice.

When the gateway cannot be reached the uploader waits backoff_delay(attempt): 1 s,
2 s, 4 s ... up to 5 minutes, with jitter so a depot of buses coming back online at
once does not arrive in step. A validator offline for days sends everything, batch
after batch, as soon as one request succeeds.
"""
from __future__ import annotations

import hashlib
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from protocol import uplink
from protocol.uplink import Client, GatewayError, GatewayRefused
from terminal.journal import Journal, JournalError

log = logging.getLogger("terminal")

BATCH_SIZE = 500
BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0


def backoff_delay(attempt: int, jitter: float, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait after `attempt` failures in a row (attempt >= 1); jitter in [0, 1)
    spreads it over the upper half of the exponential step."""
    step = min(cap, base * 2 ** min(max(attempt, 1) - 1, 30))
    return step * (0.5 + 0.5 * jitter)


@dataclass
class UploadReport:
    batches: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    rejections: list[tuple[str, str]] = field(default_factory=list)  # (tap id, reason), the last few

    def add(self, results: list[dict]) -> None:
        self.batches += 1
        for r in results:
            status = r.get("status")
            if status == "accepted":
                self.accepted += 1
            elif status == "duplicate":
                self.duplicate += 1
            else:
                self.rejected += 1
                self.rejections = (self.rejections + [(r.get("id"), r.get("reason", ""))])[-20:]


def result_of(row: dict) -> str:
    """What the journal keeps of the gateway's answer for one tap."""
    status = row.get("status")
    if status in ("accepted", "duplicate"):
        return status
    return f"rejected:{row.get('reason', 'unknown')}"


def batch_key(rows: list[dict], prefix: str = "taps") -> str:
    """The Idempotency-Key of a batch: its row ids. A batch sent again after a crash is the
    same rows (journal rows never change), so the gateway replays its first answer."""
    return f"{prefix}-" + hashlib.sha256("\n".join(r["id"] for r in rows).encode()).hexdigest()[:48]


def _send(client: Client, path: str, field: str, rows: list[dict]) -> list[dict]:
    """POST rows as {field: rows}; the gateway's answers for them."""
    answer = client.post(path, {field: rows}, idempotency_key=batch_key(rows, field))
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        raise GatewayRefused(200, {"message": "the gateway's answer has no results"})
    sent = {r["id"] for r in rows}
    return [r for r in results if isinstance(r, dict) and r.get("id") in sent]


def upload_batch(journal: Journal, client: Client, now: Callable[[], datetime],
                 batch_size: int = BATCH_SIZE, report: UploadReport | None = None) -> int:
    """Send one batch of unsent taps; the number sent (0: nothing was waiting).
    Raises GatewayError when the gateway did not answer for the batch."""
    rows = journal.unsent(batch_size)
    if not rows:
        return 0
    taps = [r for r in rows if not uplink.is_sale(r)]
    sales = [r for r in rows if uplink.is_sale(r)]
    results = []
    if taps:
        results += _send(client, uplink.TAPS_PATH, "taps", taps)
    if sales:  # a batch's taps are marked only with its sales: a re-sent tap is a duplicate
        results += _send(client, uplink.SALES_PATH, "sales", sales)
    journal.mark_sent({r["id"]: result_of(r) for r in results}, now())
    if report is not None:
        report.add(results)
    return len(rows)


def upload_all(journal: Journal, client: Client, now: Callable[[], datetime],
               batch_size: int = BATCH_SIZE) -> UploadReport:
    """Send batches until nothing is left; GatewayError from the first batch that fails."""
    report = UploadReport()
    while upload_batch(journal, client, now, batch_size, report):
        pass
    return report


class Uploader:
    """A background thread running upload_all whenever taps wait, backing off on failure."""

    def __init__(self, journal_path, terminal_id: bytes, client: Client, now: Callable[[], datetime], *,
                 batch_size: int = BATCH_SIZE, idle: float = 2.0, on_error: Callable[[str], None] | None = None,
                 rng: random.Random | None = None, wait: Callable[[float], None] | None = None):
        self.journal_path, self.terminal_id, self.client, self.now = journal_path, terminal_id, client, now
        self.batch_size, self.idle = batch_size, idle
        self.on_error = on_error or (lambda message: None)
        self.rng = rng or random.Random()
        self.last_success: datetime | None = None
        self.failures = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="uploader", daemon=True)
        self._wait = wait or self._sleep  # tests pass their own to see the delays asked for

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        """A tap was journalled: upload soon (unless backing off after a failure)."""
        if not self.failures:
            self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _sleep(self, delay: float) -> None:
        self._wake.wait(delay)
        self._wake.clear()

    def _run(self) -> None:
        """Upload until stopped. Nothing ends this thread but stop(): a gateway that does not
        answer, a journal that cannot be read or marked, anything unexpected (logged with its
        trace) only makes it wait and try again."""
        journal = None
        try:
            while not self._stop.is_set():
                try:
                    if journal is None:
                        journal = Journal(self.journal_path, self.terminal_id)  # this thread's own connection
                    upload_all(journal, self.client, self.now, self.batch_size)
                    self.failures, self.last_success = 0, self.now()
                    delay = self.idle
                except (GatewayError, JournalError) as e:
                    delay = self._failed(f"upload failed ({e})")
                except Exception as e:
                    log.exception("the uploader failed")
                    delay = self._failed(f"upload failed ({type(e).__name__}: {e}; logged)")
                self._wait(delay)
        finally:
            if journal is not None:
                journal.close()

    def _failed(self, why: str) -> float:
        self.failures += 1
        delay = backoff_delay(self.failures, self.rng.random())
        self.on_error(f"{why}; retrying in {delay:.0f} s")
        return delay
