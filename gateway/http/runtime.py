"""What a request needs from the application: configuration, store and clock.

    rt = runtime()          # inside a request (or an app context)
    with rt.store.read() as tx: ...; rt.now(); rt.secret("issuer_seed")

create_app (gateway.http.app) puts one Runtime in each app; views, auth and
idempotency read it here, so none of them imports the app factory.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from flask import current_app

from gateway import config as gateway_config


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Runtime:
    """What a request needs from the application: configuration, store and clock."""
    config: gateway_config.Config
    store: object
    clock: Callable[[], datetime]
    _secrets: dict = field(default_factory=dict, repr=False, compare=False)
    # key hash -> (Caller, monotonic expiry): gateway.http.auth's cache of bearer keys
    callers: dict = field(default_factory=dict, repr=False, compare=False)

    def now(self) -> datetime:
        return self.clock()

    def secret(self, name: str) -> bytes:
        """config.secret(name), read once per process (secrets never change while serving)."""
        if name not in self._secrets:
            self._secrets[name] = self.config.secret(name)
        return self._secrets[name]


def runtime() -> Runtime:
    """The current application's Runtime (inside a request or app context)."""
    return current_app.extensions["tapstack"]
