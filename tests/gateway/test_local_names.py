"""Names in local scripts over the API: billers, merchants and shop profiles take a name and a
city in any script with their Latin forms; every code they issue carries the local name in
template 64 beside fields 59 and 60, and scans back from its picture."""
from __future__ import annotations

from protocol import emvqr
from tests.gateway.fixtures import START, error, ok
from wallet import qr as wallet_qr

BILL = {"consumer_number": "330105-0042", "period": "2026-11", "amount_due": 12_345, "currency": "CNY",
        "due_date": "2026-12-10"}


def scanned(api, path: str) -> emvqr.MerchantQr:
    """The code behind `path` as a camera would read it: drawn as a PNG, decoded, parsed strictly."""
    return emvqr.parse(wallet_qr.read_text(api.get(path).get_data()), strict=True)


def test_a_biller_with_a_chinese_name_issues_bills_whose_codes_carry_it(operator):
    biller = ok(operator.post("/v1/billers", {"name": "杭州水务集团", "name_latin": "Hangzhou Water",
                                              "city": "杭州", "city_latin": "Hangzhou"}), 201)
    assert (biller["name"], biller["name_latin"], biller["city"], biller["city_latin"]) == (
        "杭州水务集团", "Hangzhou Water", "杭州", "Hangzhou")
    water = operator.as_(biller["secret"])
    assert ok(water.get(f"/v1/billers/{biller['id']}")) == {k: v for k, v in biller.items()
                                                            if k not in ("secret", "api_key")}
    bill = ok(water.post("/v1/bills", BILL), 201)
    assert bill["biller_name"] == "杭州水务集团"
    qr = scanned(water, f"/v1/bills/{bill['id']}/qr.png")
    assert qr == emvqr.parse(ok(water.get(f"/v1/bills/{bill['id']}/qr"))["payload"])
    assert (qr.name, qr.city) == ("Hangzhou Water", "Hangzhou")
    assert qr.language == {"00": "ZH", "01": "杭州水务集团", "02": "杭州"}
    code = emvqr.read_tapstack(qr, START)
    assert (code.kind, code.merchant_id, code.bill_number) == ("bill", biller["id"], bill["bill_number"])


def test_without_latin_forms_the_stated_fallbacks_fill_fields_59_and_60(operator):
    biller = ok(operator.post("/v1/billers", {"name": "哈尔滨供水", "city": "哈尔滨", "language": "zh"}), 201)
    assert (biller["name_latin"], biller["city_latin"], biller["language"]) == (None, None, "ZH")
    water = operator.as_(biller["api_key"])
    bill = ok(water.post("/v1/bills", BILL), 201)
    qr = emvqr.parse(ok(water.get(f"/v1/bills/{bill['id']}/qr"))["payload"], strict=True)
    assert (qr.name, qr.city, qr.local_name, qr.local_city) == (biller["id"][:25], "CN", "哈尔滨供水", "哈尔滨")


def test_a_shop_with_a_chinese_name_shows_it_on_its_static_and_checkout_codes(operator):
    shop = ok(operator.post("/v1/merchants", {"name": "西湖便利店", "name_latin": "West Lake Mart"}), 201)
    assert (shop["name"], shop["name_latin"], shop["language"]) == ("西湖便利店", "West Lake Mart", None)
    merchant = operator.as_(shop["api_key"])
    profile = ok(merchant.post(f"/v1/merchants/{shop['id']}/qr-profile",
                               {"city": "杭州", "city_latin": "Hangzhou", "store_label": "Store 7"}))
    assert (profile["city"], profile["city_latin"]) == ("杭州", "Hangzhou")
    static = scanned(merchant, f"/v1/merchants/{shop['id']}/qr.png")
    assert (static.name, static.city, static.local_name, static.local_city, static.dynamic) == (
        "West Lake Mart", "Hangzhou", "西湖便利店", "杭州", False)
    checkout = ok(merchant.post("/v1/checkouts", {"amount": 990, "currency": "CNY"}), 201)
    assert checkout["merchant_name"] == "西湖便利店"
    qr = scanned(merchant, f"/v1/checkouts/{checkout['id']}/qr.png")
    assert qr.local_name == "西湖便利店" and qr.name == "West Lake Mart"
    assert emvqr.read_tapstack(qr, START).reference == checkout["id"]


def test_latin_forms_and_languages_are_checked(operator):
    for body, param in (({"name": "杭州水务", "city": "杭州", "name_latin": "杭州"}, "name_latin"),
                        ({"name": "杭州水务", "city": "杭州", "city_latin": "A city far too long"}, "city_latin"),
                        ({"name": "杭州水务", "city": "杭州", "language": "chinese"}, "language")):
        assert error(operator.post("/v1/billers", body), 400, "invalid_request_error")["param"] == param
    assert error(operator.post("/v1/merchants", {"name": "店", "name_latin": ""}), 400,
                 "invalid_request_error")["param"] == "name_latin"
    shop = ok(operator.post("/v1/merchants", {"name": "Corner"}), 201)
    assert error(operator.post(f"/v1/merchants/{shop['id']}/qr-profile", {"city": "杭州", "store_label": "七号店"}),
                 400, "invalid_request_error")["param"] == "store_label"
