"""What the core refuses, as plain exceptions: no HTTP status, no web framework.

Each carries `code` (stable, for programs), `message` (for people) and `param` (the
field at fault, or None). The kind of refusal is the class:

    Invalid    the request is malformed: wrong types, bad amounts, unknown values
    Forbidden  the caller may not do this (a merchant that is not a biller)
    NotFound   no such object, or not the caller's: others' objects are
               indistinguishable from missing ones
    Conflict   the object's state forbids it (captured, expired, locked)
    Declined   the request was valid, the money is not there (insufficient funds)

gateway.http.errors maps each class to its status in one table; the ledger's errors
(gateway.core.ledger) are subclasses of these too.
"""
from __future__ import annotations


class DomainError(Exception):
    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


class Invalid(DomainError):
    pass


class Forbidden(DomainError):
    pass


class NotFound(DomainError):
    pass


class Conflict(DomainError):
    pass


class Declined(DomainError):
    pass


def not_found(what: str, param: str | None = None) -> NotFound:
    """The one answer for a missing object and for another caller's."""
    return NotFound("resource_missing", f"No such {what}.", param)
