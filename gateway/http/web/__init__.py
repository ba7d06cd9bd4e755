"""The gateway's web pages: the operator dashboard (/dashboard) and the phone wallet (/wallet).

Server-rendered HTML (Jinja2 templates in templates/, one CSS file in static/). The
dashboard runs no script. The wallet pages run the gateway's own scripts (static/*.js,
no other origin): the camera scanner, the ride code the phone signs and draws itself,
and small helps (a pay button that cannot be tapped twice); every page still works as
plain forms where a script cannot run. Sign-in puts the caller in Flask's signed
session cookie, whose key is config.secret("session_key"); keys are only ever POSTed,
never put in a URL. Every form that changes something carries the session's CSRF token
(a script's request carries it in the X-CSRF-Token header). The data comes from
gateway.core.dashboard and the services (plain functions over a Tx); the pages only shape
and format it.

Settings (environment): TAPSTACK_TIMEZONE, the zone times are shown in (an IANA name,
default Asia/Shanghai; the operator can change it per session); TAPSTACK_SECURE_COOKIES=1
marks the session cookie Secure (set it behind HTTPS).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from datetime import datetime, timedelta

from flask import Blueprint, abort, render_template, request, session
from werkzeug.exceptions import HTTPException

from gateway.core import dashboard, ledger
from gateway.core.errors import DomainError
from gateway.http import errors
from gateway.http.errors import ApiError

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static",
               static_url_path="/web/static")

SESSION_HOURS = 8
CSRF_FIELD = "csrf_token"
_HEADERS = {
    # Only our own stylesheet; inline SVG needs nothing else. No script runs on these pages.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# The wallet's pages also run the gateway's own scripts, which talk only to the gateway,
# and show the camera's picture (a MediaStream: mediastream: and blob: URLs); the camera
# may be used by these pages and nothing they embed.
_WALLET_HEADERS = {
    **_HEADERS,
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
}
CSRF_HEADER = "X-CSRF-Token"


@bp.record_once
def _configure(state) -> None:
    app = state.app
    app.secret_key = app.extensions["tapstack"].secret("session_key")
    app.config.update(SESSION_COOKIE_NAME="tapstack_session", SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SECURE=os.environ.get("TAPSTACK_SECURE_COOKIES") == "1",
                      PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS))


def default_zone_name() -> str:
    name = os.environ.get("TAPSTACK_TIMEZONE") or dashboard.DEFAULT_ZONE
    try:
        dashboard.zone(name)
    except ValueError:
        return dashboard.DEFAULT_ZONE
    return name


def current_zone():
    """The zone this session shows times in."""
    try:
        return dashboard.zone(session.get("zone") or default_zone_name())
    except ValueError:
        return dashboard.zone(dashboard.DEFAULT_ZONE)


def fingerprint(secret_text: str) -> str:
    """What the session keeps of a credential: enough to notice it changed, useless to replay."""
    return hashlib.sha256(b"tapstack web session\n" + secret_text.encode()).hexdigest()[:32]


def csrf_token() -> str:
    token = session.get(CSRF_FIELD)
    if token is None:
        token = session[CSRF_FIELD] = secrets.token_urlsafe(24)
    return token


def check_csrf() -> None:
    """The form's CSRF token (or a script's, in the X-CSRF-Token header) is the session's."""
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD, "")
    token = session.get(CSRF_FIELD)
    if not token or not hmac.compare_digest(sent.encode(), token.encode()):
        abort(400, "This form has expired; reload the page and try again.")


@bp.app_template_filter("money")
def money(amount: int | None, currency: str | None) -> str:
    if amount is None or currency is None:
        return "—"
    try:
        return ledger.format_amount(amount, currency)
    except ledger.LedgerError:
        return f"{amount} {currency} minor units"


@bp.app_template_filter("when")
def _when(seconds: int | str | None, precise: bool = False) -> str:
    """Unix seconds (or an ISO 8601 UTC time) in the session's zone: '2026-11-27 17:05'
    (with seconds when `precise`)."""
    if seconds is None:
        return "—"
    if isinstance(seconds, str):
        seconds = int(datetime.fromisoformat(seconds.replace("Z", "+00:00")).timestamp())
    shown = dashboard.local(seconds, current_zone())
    return shown.strftime("%Y-%m-%d %H:%M:%S" if precise else "%Y-%m-%d %H:%M")


@bp.app_context_processor
def _context() -> dict:
    return {"csrf_token": csrf_token, "CSRF_FIELD": CSRF_FIELD, "zone_name": lambda: current_zone().key}


def page(template: str, status: int = 200, **values):
    return render_template(template, **values), status


@bp.after_request
def _headers(response):
    headers = _WALLET_HEADERS if request.path.startswith("/wallet") else _HEADERS
    for name, value in headers.items():
        if name == "Cache-Control" and request.endpoint == "web.static":
            continue  # the stylesheet may be cached; pages with balances and keys may not
        response.headers.setdefault(name, value)
    return response


def _home() -> str:
    return "/dashboard" if request.path.startswith("/dashboard") else "/wallet"


@bp.errorhandler(Exception)
def _error(exc: Exception):
    """Any error on a page is a page saying what went wrong (never a traceback or JSON)."""
    if isinstance(exc, HTTPException):
        err = errors._http_error(exc)
        if exc.code == 400 and exc.description:
            err.message = exc.description
    elif isinstance(exc, (ApiError, DomainError)):
        err = errors.api_error(exc)
    else:
        errors.log.exception("unhandled error on a web page")
        err = ApiError(500, "api_error", "internal_error", "Something went wrong; nothing was changed.")
    body, status = page("error.html", err.status, message=err.message, back=_home())
    # a rate limit or a busy store says when to try again, as the API's answer does
    return body, status, ({"Retry-After": str(err.retry_after)} if hasattr(err, "retry_after") else {})


from gateway.http.web import funds, operator, ride, scan, wallet  # noqa: E402,F401  (routes register on bp)
