"""Cards from their descriptions, and card images: a card's description with its state now.

    built = build_card(spec)          # spec: a scenario card, or load_card_file("club.card.yaml")
    built.card                        # present it on any Field
    save_card(built, "after.card.yaml")
    again = load_card("after.card.yaml")   # the same card, where it was (points, state, balance)

A card file is one card's keys in YAML, as under `cards:` in a scenario. The image adds
`image:`: a scripted card's state and rule counters, what a Python card's image()
returned, a purse's balance, counter and receipts.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from tapstack.testing.cards import PythonCard, ScriptedCard, image
from tapstack.testing.replay import ReplayCard
from tapstack.testing.scenario import CardSpec, load_card_file
from wallet.card import plain_uid_card
from wallet.emv_card import emv_card
from wallet.testcards import DemoPurse, demo_purse_card


@dataclass
class BuiltCard:
    """A card built from its spec; `purse` is the DemoPurse behind a purse card."""
    spec: CardSpec
    card: object
    purse: DemoPurse | None = None

    def image(self) -> dict:
        if self.purse is not None:
            s = self.purse.store.state
            state = {"balance": s.balance, "counter": s.counter, "locked": s.locked,
                     "receipts": [r.hex() for r in s.receipts]}
            return {**{k: v for k, v in self.spec.description.items() if k != "image"}, "image": state}
        return image(self.card, self.spec.description)


def build_card(spec: CardSpec) -> BuiltCard:
    """A fresh card from its spec, its saved image (if any) loaded."""
    o = spec.options
    saved = o.get("image")
    if spec.type == "purse":
        demo = demo_purse_card(balance=o["balance"], currency=o["currency"], card_id=o["card_id"],
                               uid=o.get("uid"), locked=o["locked"])
        demo.card.name = spec.name
        if saved:
            demo.store.state = dataclasses.replace(
                demo.store.state, balance=int(saved.get("balance", o["balance"])),
                counter=int(saved.get("counter", 0)), locked=bool(saved.get("locked", o["locked"])),
                receipts=tuple(bytes.fromhex(r) for r in saved.get("receipts", ())))
        return BuiltCard(spec, demo.card, demo)
    if spec.type == "emv":
        card: object = emv_card(o["uid"], pan=o["pan"], expiry=o["expiry"], name=o["holder"])
        card.name = spec.name
    elif spec.type == "uid":
        card = plain_uid_card(o["uid"], name=spec.name)
    elif spec.type == "scripted":
        from tapstack.testing.cards import Rule

        rules = [dataclasses.replace(r, used=0) for r in o["rules"]]
        if "function" in o:
            rules.append(Rule.of("*", o["function"]))
        card = ScriptedCard(o["uid"], rules, default=o["default"], atr=o.get("atr"), name=spec.name,
                            protocol=o.get("protocol", "T=1"), state=o.get("state"), ordered=o["ordered"])
    elif spec.type == "python":
        program = o["class"](**o["options"])
        card = PythonCard(program, name=spec.name, uid=o.get("uid"), atr=o.get("atr"), protocol=o.get("protocol"))
    elif spec.type == "replay":
        card = ReplayCard(o["sessions"], match=o["match"], uid=o.get("uid"), name=spec.name)
    else:  # the loader admits only the types above
        raise AssertionError(spec.type)
    if saved and hasattr(card, "load_state"):
        card.load_state(saved)
    return BuiltCard(spec, card)


def load_card(path: str | Path, name: str | None = None) -> BuiltCard:
    """The card a card file (or a saved image) describes; ScenarioError saying what is wrong."""
    return build_card(load_card_file(path, name))


def _moved(doc: dict, old: Path, new: Path) -> dict:
    """The description's file references (class, function, trace) made relative to new."""
    out = dict(doc)
    for key in ("class", "function", "trace"):
        value = out.get(key)
        if not isinstance(value, str) or (key != "trace" and ".py:" not in value):
            continue
        file, colon, attr = value.rpartition(":") if key != "trace" else (value, "", "")
        out[key] = os.path.relpath(old / file, new) + colon + attr
    return out


def save_card(built: BuiltCard, path: str | Path) -> Path:
    """Write the card's image: its description and its state now, as YAML."""
    path = Path(path)
    doc = _moved(built.image(), built.spec.base.resolve(), path.parent.resolve())
    path.write_text(f"# the image of card {built.spec.name!r}: load it (file: {path.name}) to go on where it was\n"
                    + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100), encoding="utf-8")
    return path
