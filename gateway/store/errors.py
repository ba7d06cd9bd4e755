"""What the store raises, whichever backend: no driver exception reaches a caller."""


class StoreError(Exception):
    """Misuse of the store or a broken migration (a programming or deployment error)."""


class StoreBusy(Exception):
    """The database is too busy, or briefly out of reach: try again shortly (the API answers 503)."""

    retry_after_seconds = 1


class StoreUnavailable(StoreBusy):
    """The database cannot be reached (down, restarting, or the network between)."""

    retry_after_seconds = 2


class IntegrityError(Exception):
    """A statement broke a constraint (a duplicate key, a CHECK, a foreign key)."""
