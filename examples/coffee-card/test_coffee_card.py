"""The coffee card's tests in Python, with tapstack's pytest plugin: each test runs once per
transport (mock, pcscd+vpcd, nfcpy-udp) through the `field` fixture. Where YAML is enough, the
scenario files beside this one say the same more briefly."""
from __future__ import annotations

from coffee_card import AID, CoffeeCard

from tapstack.testing import CardChannel

WRONG_PIN, RIGHT_PIN = "0020000104 31323330", "0020000104 31323334"


def test_three_wrong_pins_block_the_card_for_good(field, tapstack_cards):
    card = CardChannel(field.tap(tapstack_cards.python(CoffeeCard(points=50))))
    assert card.select(AID).sw == 0x9000
    assert [card.send(WRONG_PIN).sw for _ in range(3)] == [0x63C2, 0x63C1, 0x6983]
    assert card.send(RIGHT_PIN).sw == 0x6983  # blocked: the right PIN no longer helps
    assert card.send("80D00000 02 0014 02").sw == 0x6982  # and nothing can be redeemed


def test_a_t0_card_answers_through_get_response_and_a_corrected_le(field, tapstack_cards):
    coffee = CoffeeCard(points=0)
    card = CardChannel(field.tap(tapstack_cards.python(coffee)))
    card.select(AID)
    earned = card.send("80E00000", data="05", le=2)
    assert (earned.data, earned.sw) == (bytes.fromhex("0032"), 0x9000)  # the reader fetched 61 02 for us
    assert card.send("80B2000000").data == bytes.fromhex("E00032")  # Le 00 was wrong: 6C03, asked again
    seen = [(command.hex().upper(), (response or b"").hex().upper()) for command, response in field.exchanges]
    assert ("80E00000010502", "6102") in seen and ("00C0000002", "00329000") in seen
    assert ("80B2000000", "6C03") in seen and ("80B2000003", "E000329000") in seen


def test_the_card_goes_on_from_its_image(field, tapstack_cards, tmp_path):
    from tapstack.testing.cardfile import BuiltCard, load_card, save_card
    from tapstack.testing.scenario import load_card_file

    spec_file = tmp_path / "coffee.card.yaml"
    spec_file.write_text(f"type: python\nclass: {CoffeeCard.__module__}:CoffeeCard\noptions: {{points: 40}}\n")
    built = load_card(spec_file)
    card = CardChannel(field.tap(built.card))
    card.select(AID)
    assert card.send("80E00000", data="02", le=2).data == bytes.fromhex("003C")
    field.take_away()
    save_card(built, tmp_path / "after.card.yaml")
    again = load_card(tmp_path / "after.card.yaml")
    assert isinstance(again, BuiltCard) and again.card.program.points == 60
    card = CardChannel(field.tap(again.card))
    card.select(AID)
    assert card.send("80B0000002").data == bytes.fromhex("003C")
    assert load_card_file(tmp_path / "after.card.yaml").options["image"]["history"] == ["E00014"]
