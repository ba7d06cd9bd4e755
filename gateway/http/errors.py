"""The gateway's one error shape and the handler that renders it.

Every error, from a validation failure to an unknown route or a crash, answers

    {"error": {"type": ..., "code": ..., "message": ..., "param": ...}}

with these statuses and types:

    400 invalid_request_error  malformed JSON, wrong types, missing or extra fields,
                               bad amounts, unknown currency, missing Idempotency-Key
    401 authentication_error   no, unknown or badly signed credentials
    403 permission_error       a valid caller using an endpoint its kind may not use
    404 not_found              unknown route, or an object that is not the caller's:
                               others' objects are indistinguishable from missing ones
    405 invalid_request_error  method_not_allowed
    409 idempotency_error      an Idempotency-Key reused with a different request
    409 conflict               the object's state forbids it (captured, expired, locked)
    402 payment_error          insufficient_funds: the request was valid, the money is
                               not there (402 "Payment Required" says exactly that, and
                               keeps it apart from 422-style validation errors)
    413 invalid_request_error  body_too_large, chunked or not; nothing was done
    414, 431                   gunicorn's limits on the request line and headers
                               (written by gateway.http.app for gunicorn, in this shape)
    415 invalid_request_error  unsupported_media_type: a body that is not application/json
    429 rate_limit_error       rate_limited: the credential's requests (or a wallet's bill
                               lookups) passed the minute's limit; nothing was done, retry
                               after Retry-After (gateway.http.rate_limits)
    500 api_error              internal_error; details go to the log, never the caller
    503 api_error              store_busy: the database stayed locked past the store's
                               busy timeout; nothing was done, retry after Retry-After

The core raises its domain errors (gateway.core.errors, the ledger's among them), which
know no status: STATUS below is the one table that maps them (400, 402, 403, 404, 409
conflict). `ApiError` is for what only HTTP knows: credentials, methods, bodies, media
types, idempotency keys, rate limits, a busy store.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

from gateway.core.errors import Conflict, Declined, DomainError, Forbidden, Invalid, NotFound
from gateway.core.ledger import LedgerError
from gateway.store import StoreBusy, StoreUnavailable

log = logging.getLogger("tapstack.gateway")


class ApiError(Exception):
    def __init__(self, status: int, type: str, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.type, self.code, self.message, self.param = status, type, code, message, param

    def body(self) -> dict[str, Any]:
        return {"error": {"type": self.type, "code": self.code,
                          "message": self.message, "param": self.param}}


def no_route() -> ApiError:
    return ApiError(404, "not_found", "route_not_found", "No such route.")


def unauthenticated(message: str, code: str = "invalid_credentials") -> ApiError:
    return ApiError(401, "authentication_error", code, message)


# The one table: each kind of refusal the core raises (gateway.core.errors), its status and type.
STATUS = {
    Invalid: (400, "invalid_request_error"),
    Declined: (402, "payment_error"),
    Forbidden: (403, "permission_error"),
    NotFound: (404, "not_found"),
    Conflict: (409, "conflict"),
}

_ACCOUNT_ID = re.compile(r"(account )?'?acc_[A-Za-z0-9]+'?")


def api_error(err: ApiError | DomainError) -> ApiError:
    """The answer for a refusal: an ApiError as it is, a domain error by the table."""
    if isinstance(err, ApiError):
        return err
    status, error_type = next((STATUS[kind] for kind in type(err).__mro__ if kind in STATUS), STATUS[Invalid])
    message, param = err.message, err.param
    if isinstance(err, LedgerError):  # ledger accounts are internal: their ids are taken out
        message = _ACCOUNT_ID.sub(lambda m: "account" if m.group(1) else "an account", message)
    if isinstance(err, Declined):
        # The ledger's message names its internal account and the balance, which may be
        # another's (a till charging a pay code): the caller learns only that it fell short.
        message, param = "Insufficient funds: the available balance does not cover the amount.", "amount"
    return ApiError(status, error_type, err.code, message, param)


def too_large() -> ApiError:
    return ApiError(413, "invalid_request_error", "body_too_large", "Request body too large; nothing was done.")


def busy(retry_after_seconds: int = 1, *, unavailable: bool = False) -> ApiError:
    if unavailable:
        err = ApiError(503, "api_error", "database_unavailable", "The gateway cannot reach its database;"
                       " nothing was done. Retry with the same Idempotency-Key.")
    else:
        err = ApiError(503, "api_error", "store_busy",
                       "The gateway is busy; nothing was done. Retry with the same Idempotency-Key.")
    err.retry_after = retry_after_seconds
    return err


def render(err: ApiError) -> Response:
    response = Response(json.dumps(err.body()), status=err.status, mimetype="application/json")
    if err.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="tapstack"'
    if err.status in (429, 503):
        response.headers["Retry-After"] = str(getattr(err, "retry_after", 1))
    return response


def _http_error(exc: HTTPException) -> ApiError:
    if exc.code == 404:
        return no_route()
    if exc.code == 405:
        return ApiError(405, "invalid_request_error", "method_not_allowed",
                        "Method not allowed on this route.")
    if exc.code == 413:
        return too_large()
    if exc.code is not None and exc.code < 500:
        return ApiError(exc.code, "invalid_request_error", exc.name.lower().replace(" ", "_"),
                        exc.description or exc.name)
    return ApiError(500, "api_error", "internal_error", "Internal error.")


def register(app: Flask) -> None:
    """Install the handlers that turn every exception into the one error shape."""
    @app.errorhandler(ApiError)
    def _api(err: ApiError):
        return render(err)

    @app.errorhandler(DomainError)
    def _domain(err: DomainError):
        return render(api_error(err))

    @app.errorhandler(StoreBusy)
    def _busy(exc: StoreBusy):
        log.warning("store busy: %s", exc)
        return render(busy(exc.retry_after_seconds, unavailable=isinstance(exc, StoreUnavailable)))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        return render(_http_error(exc))

    @app.errorhandler(Exception)
    def _any(exc: Exception):
        log.exception("unhandled error")
        return render(ApiError(500, "api_error", "internal_error", "Internal error."))
