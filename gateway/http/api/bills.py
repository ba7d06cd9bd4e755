"""/v1/billers, /v1/bills, /v1/bill-batches and /v1/bill-payments: the utility pilot.

The operator signs billers up; a biller issues bills one by one or in a batch (JSON or
CSV), serves each bill's QR code and reconciles payments by period; a wallet finds its
bills, pays them (by bill id or by the scanned code) and reads its receipts.
"""
from __future__ import annotations

import csv
import io

import qrcode
import qrcode.image.svg
from flask import Blueprint, Response, request

from gateway.core import bills
from gateway.core.errors import Invalid
from gateway.http import api, rate_limits
from gateway.http.auth import current_caller, requires
from gateway.http.idempotency import idempotent
from gateway.http.runtime import runtime

bp = Blueprint("bills", __name__)


# -- shared with gateway.http.api.checkout ----------------------------------------------

def qr_image(payload: str, kind: str) -> Response:
    """The payload as a QR code, error correction M with a 4-module quiet zone (as wallet.qr)."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4, box_size=8)
    code.add_data(payload)
    code.make(fit=True)
    if kind == "svg":
        image = code.make_image(image_factory=qrcode.image.svg.SvgPathImage)
        return Response(image.to_string(encoding="unicode"), mimetype="image/svg+xml")
    out = io.BytesIO()
    code.make_image().save(out, format="PNG")
    return Response(out.getvalue(), mimetype="image/png")


# -- billers ------------------------------------------------------------------------------------

@bp.post("/v1/billers")
@requires("operator")
@idempotent
def create_biller(tx):
    """Answers once with the biller's API key ("sk_..."); only its SHA-256 is kept."""
    body = api.json_body(required=("name", "city"), optional=("currency", "mcc", "name_latin", "city_latin",
                                                              "language"))
    currency = api.currency(body) if "currency" in body else runtime().config.currency
    biller, api_key = bills.create_biller(tx, name=api.text(body, "name", max_length=200), currency=currency,
                                          city=body["city"], mcc=body.get("mcc"), now=runtime().now(),
                                          name_latin=body.get("name_latin"), city_latin=body.get("city_latin"),
                                          language=body.get("language"))
    return 201, {**biller, "secret": api_key, "api_key": api_key}  # api_key: deprecated alias of secret


@bp.get("/v1/billers/<biller_id>")
@requires("operator", "merchant")
def get_biller(biller_id):
    with runtime().store.read() as tx:
        return bills.biller_view(bills.biller_row(tx, current_caller(), biller_id))


# -- bills --------------------------------------------------------------------------------------

@bp.post("/v1/bills")
@requires("merchant")
@idempotent
def create_bill(tx):
    body = api.json_body(required=bills.REQUIRED_BILL_FIELDS, optional=bills.BILL_FIELDS)
    return 201, bills.create_bill(tx, current_caller(), body, now=runtime().now())


def _csv_rows(raw: bytes) -> list[dict]:
    """CSV with a header line naming the bill fields; empty cells are absent fields. A line
    that cannot be a bill becomes its Invalid, reported in its place."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid("malformed_csv", "The CSV is not UTF-8.") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise Invalid("malformed_csv", "The CSV has no header line.")
    unknown = sorted(set(reader.fieldnames) - set(bills.BILL_FIELDS))
    if unknown:
        raise Invalid("unknown_parameter", f"Unknown CSV column(s): {', '.join(unknown)}.", unknown[0])
    rows = []
    try:
        for record in reader:
            if None in record:
                rows.append(Invalid("malformed_csv", f"{len(reader.fieldnames) + len(record[None])} cells; "
                                                     f"the header names {len(reader.fieldnames)}."))
                continue
            row = {k: v.strip() for k, v in record.items() if v is not None and v.strip()}
            for name in ("amount_due", "minimum_payment"):
                if name in row and row[name].isascii() and row[name].isdigit():
                    row[name] = int(row[name])
            rows.append(row)
    except csv.Error as err:
        raise Invalid("malformed_csv", f"The CSV cannot be read: {err}.") from None
    return rows


@bp.post("/v1/bill-batches")
@requires("merchant")
@idempotent
def create_batch(tx):
    """JSON {"bills": [...]} or text/csv; bad rows are reported by number, good ones created."""
    if request.mimetype == "text/csv":
        rows, first = _csv_rows(request.get_data(cache=True)), 2  # line 1 is the header
    else:
        rows, first = api.json_body(required=("bills",))["bills"], 1
    return 201, bills.create_batch(tx, current_caller(), rows, now=runtime().now(), first_row=first)


@bp.get("/v1/bills")
@requires("operator", "merchant", "wallet")
def list_bills():
    args = api.query("biller_id", "consumer_number", "bill_number", "period", "status")
    if "period" in args:
        bills.check_period(args["period"])
    if args.get("status") not in (None, "outstanding", "open", "partially_paid", "paid", "cancelled", "expired"):
        raise Invalid("invalid_parameter", "status must be outstanding, open, partially_paid, paid, cancelled "
                                           "or expired.", "status")
    rt = runtime()
    if current_caller().kind == "wallet" and ("consumer_number" in args or "bill_number" in args):
        rate_limits.check_bill_lookup(rt, current_caller().id)  # so that guessing numbers is slow
    with rt.store.read() as tx:
        return bills.list_bills(tx, current_caller(), now=rt.now(), **args)


@bp.get("/v1/bills/<bill_id>")
@requires("operator", "merchant", "wallet")
def get_bill(bill_id):
    rt = runtime()
    with rt.store.read() as tx:
        return bills.get_bill(tx, current_caller(), bill_id, now=rt.now())


def _payload(bill_id: str) -> str:
    rt = runtime()
    with rt.store.read() as tx:
        return bills.qr_payload(tx, current_caller(), bill_id, now=rt.now())


@bp.get("/v1/bills/<bill_id>/qr")
@requires("operator", "merchant", "wallet")
def bill_qr(bill_id):
    """The raw EMVCo payload, for apps that draw the code themselves."""
    return {"object": "qr_code", "bill_id": bill_id, "payload": _payload(bill_id)}


@bp.get("/v1/bills/<bill_id>/qr.png", defaults={"kind": "png"})
@bp.get("/v1/bills/<bill_id>/qr.svg", defaults={"kind": "svg"})
@requires("operator", "merchant", "wallet")
def bill_qr_image(bill_id, kind):
    return qr_image(_payload(bill_id), kind)


@bp.post("/v1/bills/<bill_id>/cancel")
@requires("merchant")
@idempotent
def cancel_bill(tx, bill_id):
    api.json_body()
    return 200, bills.cancel_bill(tx, current_caller(), bill_id, now=runtime().now())


# -- payments -----------------------------------------------------------------------------------

@bp.post("/v1/bills/<bill_id>/payments")
@requires("wallet")
@idempotent
def pay_bill(tx, bill_id):
    """Without an amount, pays all that is outstanding."""
    body = api.json_body(optional=("amount",))
    return 201, bills.pay_bill(tx, current_caller(), bill_id, amount=api.amount(body, optional=True),
                               now=runtime().now())


@bp.post("/v1/bill-payments")
@requires("wallet")
@idempotent
def pay_by_payload(tx):
    """Pay the bill a scanned code names; without an amount, the amount the code shows."""
    body = api.json_body(required=("payload",), optional=("amount",))
    return 201, bills.pay_by_payload(tx, current_caller(), body["payload"],
                                     amount=api.amount(body, optional=True), now=runtime().now())


@bp.get("/v1/bill-payments")
@requires("operator", "merchant", "wallet")
def list_payments():
    args = api.query("period", "biller_id")
    if "period" in args:
        bills.check_period(args["period"])
    with runtime().store.read() as tx:
        return bills.list_bill_payments(tx, current_caller(), **args)


@bp.get("/v1/bill-payments/<payment_id>")
@requires("operator", "merchant", "wallet")
def get_payment(payment_id):
    """The payer's receipt; the biller's record of the payment."""
    with runtime().store.read() as tx:
        return bills.get_bill_payment(tx, current_caller(), payment_id)
