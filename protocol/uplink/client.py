"""The one HTTP client of the gateway's API: JSON requests, signed or with a bearer key.

A terminal (validator, till) signs every request with its terminal key: the four headers
of protocol.request_signing (key id, timestamp, a fresh nonce, HMAC-SHA256 of the
canonical request). A merchant's till that refunds as the merchant, and the wallet app,
send a bearer credential instead (`Client.bearer`).

`send` is the only I/O, passed in: by default `urllib_send` (the standard library over
HTTP(S)); tests pass a function that calls a Flask test client. The clock is passed in
too, and the nonce source.

Errors, so callers can tell what to do next:
    GatewayUnavailable  no answer, a timeout or a 5xx: try again later (backoff)
    GatewayRefused      a 4xx: the request itself is wrong; retrying will not help
"""
from __future__ import annotations

import email.utils
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone

from protocol import request_signing

# send(method, url, headers, body) -> (status, body bytes[, response headers]); OSError when unreachable
Send = Callable[[str, str, dict, bytes], tuple]


class GatewayError(Exception):
    pass


class GatewayUnavailable(GatewayError):
    """The gateway did not answer usefully (network, timeout, 5xx); `status` is the HTTP
    status of an answer that was not usable, None when none came."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class GatewayRefused(GatewayError):
    """The gateway answered 4xx; `status` and `error` (its JSON error object) say why."""

    def __init__(self, status: int, error: dict, headers: dict | None = None):
        self.status, self.error, self.headers = status, error, headers or {}
        super().__init__(f"{status} {error.get('code', '')}: {error.get('message', '')}")


def parse_terminal_key(text: str) -> tuple[str, bytes]:
    """'tk_...:<hex secret>' -> (key id, secret); ValueError saying what is wrong."""
    key_id, sep, secret = text.strip().partition(":")
    if not sep or not key_id.startswith("tk_"):
        raise ValueError("a terminal key is KEY_ID:SECRET_HEX, as 'POST /v1/terminals' answered it")
    try:
        raw = bytes.fromhex(secret)
    except ValueError:
        raise ValueError("the terminal secret is hex") from None
    if len(raw) < 16:
        raise ValueError("the terminal secret is too short")
    return key_id, raw


def urllib_send(timeout: float = 10.0) -> Send:
    def send(method: str, url: str, headers: dict, body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(url, data=body if method != "GET" else None, headers=headers,
                                         method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, answer.read(), dict(answer.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)
    return send


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Client:
    """Signed requests under a terminal key (`Client(url, key_id, secret)`), or bearer requests
    (`Client.bearer(url, credential)`)."""

    def __init__(self, base_url: str, key_id: str | None, secret: bytes | None, *, send: Send | None = None,
                 clock: Callable[[], datetime] | None = None, bearer: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.key_id, self._secret, self._bearer = key_id, secret, bearer
        self._send = send or urllib_send()
        self._clock = clock or _utc_now
        self.clock_offset = 0.0  # seconds to add to our clock to sign with the gateway's time

    @classmethod
    def bearer(cls, base_url: str, credential: str, *, send: Send | None = None) -> Client:
        return cls(base_url, None, None, send=send, bearer=credential)

    def get(self, path: str) -> dict:
        return self.request("GET", path)

    def post(self, path: str, body: dict, *, idempotency_key: str | None = None) -> dict:
        return self.request("POST", path, body, idempotency_key=idempotency_key)

    def request(self, method: str, path: str, body: dict | None = None, *,
                idempotency_key: str | None = None) -> dict:
        """Send a request; the answer's JSON. A terminal whose clock drifted beyond the
        gateway's 300 s window is told so (401 stale_timestamp): it signs again once with the
        gateway's time from the Date header, so a wrong clock never stops uploads (the taps
        keep their own times, and the gateway flags them clock_suspect)."""
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        try:
            return self._request(method, path, raw, idempotency_key)
        except GatewayRefused as e:
            offset = self._offset_from(e) if e.error.get("code") == "stale_timestamp" else None
            if offset is None or self._bearer is not None:
                raise
            self.clock_offset = offset
            return self._request(method, path, raw, idempotency_key)

    def _headers(self, method: str, path: str, raw: bytes) -> dict:
        if self._bearer is not None:
            return {"Authorization": f"Bearer {self._bearer}", "Accept": "application/json"}
        now = self._clock().timestamp() + self.clock_offset
        return request_signing.signed_headers(self.key_id, self._secret, method, path, raw,
                                              timestamp=int(now), nonce=secrets.token_urlsafe(24))

    def _request(self, method: str, path: str, raw: bytes, idempotency_key: str | None) -> dict:
        headers = self._headers(method, path, raw)
        headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        try:
            status, answer, *rest = self._send(method, self.base_url + path, headers, raw)
        except (OSError, TimeoutError) as e:
            raise GatewayUnavailable(f"{self.base_url}: {e}") from None
        if status >= 500:
            raise GatewayUnavailable(f"{self.base_url}{path}: HTTP {status}", status)
        try:
            doc = json.loads(answer or b"{}")
        except ValueError:
            raise GatewayUnavailable(f"{self.base_url}{path}: HTTP {status} with a body that is not JSON",
                                     status) from None
        if status >= 400:
            error = doc.get("error") if isinstance(doc, dict) else None
            raise GatewayRefused(status, error if isinstance(error, dict) else {"message": str(doc)[:200]},
                                 rest[0] if rest else None)
        return doc

    def _offset_from(self, refused: GatewayRefused) -> float | None:
        date = {k.lower(): v for k, v in refused.headers.items()}.get("date")
        try:
            server = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return None
        return server.timestamp() - self._clock().timestamp()
