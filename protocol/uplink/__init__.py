"""The terminal<->gateway contract: what a terminal uploads, what it downloads, and the
one client that carries both.

- `records`: TapRecord and SaleRecord, their JSON form and validation (one field table).
- `reference`: the reference-data bundle (issuer keys, deny-list, fare rules) and its paths.
- `client`: the one HTTP client (signed with a terminal key, or a bearer credential).

The upload endpoints:

    POST TAPS_PATH   {"taps": [tap row, ...]}    from a bus validator
    POST SALES_PATH  {"sales": [sale row, ...]}  from a shop till (purse payments of sales)

Each answers per row: {"id", "status": accepted|duplicate|rejected, "reason", "flags",
"clearing"}, so a terminal marks each journal row with its answer.
"""
from protocol.uplink.client import (Client, GatewayError, GatewayRefused, GatewayUnavailable, Send,
                                    parse_terminal_key, urllib_send)
from protocol.uplink.records import RecordError, SaleRecord, TapRecord, is_sale
from protocol.uplink.reference import ReferenceData

TAPS_PATH = "/v1/taps"
SALES_PATH = "/v1/sales"
MAX_BATCH = 1000  # rows per upload

__all__ = ["Client", "GatewayError", "GatewayRefused", "GatewayUnavailable", "Send", "parse_terminal_key",
           "urllib_send", "RecordError", "SaleRecord", "TapRecord", "is_sale", "ReferenceData", "TAPS_PATH",
           "SALES_PATH", "MAX_BATCH"]
