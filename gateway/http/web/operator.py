"""/dashboard: the operator's view of a day — taps, routes, validators, bills, deny-list, books.

Sign-in takes the operator key (`tapstack gateway operator-key`) in a POSTed form; the
session keeps only a fingerprint of it, so a new operator key ends every session.
"""
from __future__ import annotations

import hmac
import threading
import time
from datetime import date

from flask import redirect, request, session, url_for

from gateway.core import dashboard
from gateway.http.auth import operator_key
from gateway.http.runtime import runtime
from gateway.http.web import bp, charts, check_csrf, current_zone, fingerprint, money, page

MAX_ONLINE_MINUTES = 24 * 60
REFRESH_SECONDS = 60  # the latest day reloads itself; a chosen day stays put
CHECK_SECONDS = 300  # a ledger check is reused this long: it reads every posting

_checks: dict[str, tuple[float, dict]] = {}  # data dir and database -> (monotonic time, result), per process
_checks_lock = threading.Lock()


def ledger_check(*, fresh: bool = False) -> dict:
    """dashboard.ledger_check, reused for CHECK_SECONDS unless `fresh`; says when it ran."""
    rt = runtime()
    key = f"{rt.config.data_dir}|{rt.config.database}"
    with _checks_lock:
        hit = _checks.get(key)
    if hit and not fresh and time.monotonic() - hit[0] < CHECK_SECONDS:
        return hit[1]
    with rt.store.read() as tx:
        result = {**dashboard.ledger_check(tx), "checked_at": int(rt.now().timestamp())}
    with _checks_lock:
        _checks[key] = (time.monotonic(), result)
    return result


def signed_in() -> bool:
    mark = session.get("operator")
    return bool(mark) and hmac.compare_digest(mark, fingerprint(operator_key(runtime())))


def _day() -> date | None:
    raw = request.args.get("day")
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def _online_minutes() -> int:
    value = session.get("online_minutes", dashboard.ONLINE_MINUTES)
    return value if isinstance(value, int) and 1 <= value <= MAX_ONLINE_MINUTES else dashboard.ONLINE_MINUTES


@bp.get("/dashboard")
def dashboard_page():
    if not signed_in():
        return redirect(url_for("web.operator_login"))
    rt = runtime()
    tz = current_zone()
    asked = _day()
    notice = None
    if request.args.get("day") and asked is None:
        notice = "That is not a date (YYYY-MM-DD); showing the latest day instead."
    with rt.store.read() as tx:
        day = asked or dashboard.default_day(tx, now=rt.now(), tz=tz)
        view = dashboard.overview(tx, day=day, tz=tz, now=rt.now(), online_minutes=_online_minutes())
    hours = view["hours"]
    hour_chart = charts.columns(
        [(h["label"][:2], h["taps"], str(h["taps"])) for h in hours],
        title=f"Taps per hour, {day.isoformat()} ({tz.key})",
        desc="; ".join(f"{h['label']}: {h['taps']} taps, {h['accepted']} accepted" for h in hours if h["taps"])
        or "No taps this day.", column=40)
    priced = [r for r in view["routes"] if r["revenue"]]
    route_chart = charts.bars(
        [(r["route"] or "no route", r["revenue"], money(r["revenue"], r["currency"])) for r in priced],
        title=f"Fare revenue per route (purse cleared and token charged), {day.isoformat()}",
        desc="; ".join(f"route {r['route']}: {money(r['revenue'], r['currency'])} "
                       f"({money(r['purse'], r['currency'])} purse, {money(r['token'], r['currency'])} token)"
                       for r in priced)
        or "No fares collected this day.")
    return page("dashboard.html", v=view, lc=ledger_check(), check_minutes=CHECK_SECONDS // 60, day=day, hour_chart=hour_chart, route_chart=route_chart,
                priced_routes=priced, notice=notice, online_minutes=_online_minutes(),
                live=asked is None, refresh_seconds=REFRESH_SECONDS,
                prev_day=date.fromordinal(day.toordinal() - 1), next_day=date.fromordinal(day.toordinal() + 1))


@bp.get("/dashboard/login")
def operator_login():
    if signed_in():
        return redirect(url_for("web.dashboard_page"))
    return page("operator_login.html")


@bp.post("/dashboard/login")
def operator_login_submit():
    check_csrf()
    key = request.form.get("operator_key", "").strip()
    expected = operator_key(runtime())
    if not key or not hmac.compare_digest(fingerprint(key), fingerprint(expected)):
        return page("operator_login.html", 401, error="That is not this gateway's operator key.")
    session.permanent = True
    session["operator"] = fingerprint(expected)
    return redirect(url_for("web.dashboard_page"))


@bp.post("/dashboard/logout")
def operator_logout():
    check_csrf()
    session.pop("operator", None)
    return redirect(url_for("web.operator_login"))


@bp.post("/dashboard/settings")
def operator_settings():
    check_csrf()
    if not signed_in():
        return redirect(url_for("web.operator_login"))
    name = request.form.get("zone", "").strip()
    minutes = request.form.get("online_minutes", "").strip()
    try:
        dashboard.zone(name)
    except ValueError as e:
        return page("error.html", 400, message=f"{e}: use an IANA name such as Asia/Shanghai.", back="/dashboard")
    if not (minutes.isascii() and minutes.isdigit() and 1 <= int(minutes) <= MAX_ONLINE_MINUTES):
        return page("error.html", 400, message=f"Online window: a whole number of minutes from 1 to "
                                               f"{MAX_ONLINE_MINUTES}.", back="/dashboard")
    session["zone"] = name
    session["online_minutes"] = int(minutes)
    return redirect(url_for("web.dashboard_page", day=request.form.get("day") or None))


@bp.post("/dashboard/check")
def operator_check():
    """Run the ledger check now rather than reuse the last one."""
    check_csrf()
    if not signed_in():
        return redirect(url_for("web.operator_login"))
    ledger_check(fresh=True)
    return redirect(url_for("web.dashboard_page", day=request.form.get("day") or None, _anchor="h-ledger"))
