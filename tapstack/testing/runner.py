"""Run a loaded scenario over one transport: fields, cards, taps, expectations.

`run_scenario(scenario, transport, stage)` opens a Field per reader on the Stage, builds
fresh cards from their specs, runs the steps in order and stops at the first that fails.
A `present` step is a validator's tap: the card enters the reader's field (after the
card before it left), the reader connects, and terminal.tap.tap decides, with the
terminal context of that reader (fare, currency, deny list) and the scenario's clock.
Each tap is recorded through terminal.trace.TraceRecorder, so a failing step shows
the APDUs of the tap it checked.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

from protocol.tokens import pan_token, uid_token
from tapstack.testing.cards import ScriptedCard
from tapstack.testing.fields import Field, Stage, StageError
from tapstack.testing.replay import ReplayCard
from tapstack.testing.scenario import CardSpec, ReaderSpec, Scenario, Step
from terminal.readers.base import ReaderError
from terminal.tap import TapContext, TapOutcome, tap
from terminal.trace import Exchange, TraceRecorder
from wallet.card import plain_uid_card
from wallet.emulate import mask_pans
from wallet.emv_card import emv_card
from wallet.testcards import DEMO_TOKEN_KEY, demo_issuer_keys, demo_purse_card

CARD_TIMEOUT = 5.0  # seconds a reader may take to see a card come or go


@dataclass
class StepResult:
    step: Step
    ok: bool
    message: str = ""
    exchanges: list[Exchange] = field(default_factory=list)
    seconds: float = 0.0
    decision: object = None  # a present step's TapOutcome (program: validator: its Decision)


@dataclass
class ScenarioResult:
    scenario: Scenario
    transport: str
    steps: list[StepResult] = field(default_factory=list)
    error: str = ""  # the run could not start (a transport missing)

    @property
    def ok(self) -> bool:
        return not self.error and all(s.ok for s in self.steps) and len(self.steps) == len(self.scenario.steps)

    @property
    def failure(self) -> StepResult | None:
        return next((s for s in self.steps if not s.ok), None)

    def report(self) -> str:
        """What failed, where, expected and seen, and the APDUs of the tap; "" when it passed."""
        if self.error:
            return f"{self.error} ({self.scenario.name})"
        bad = self.failure
        if bad is None:
            return ""
        lines = [f"{self.scenario.where(bad.step.line)}: step {bad.step.action!r} failed "
                 f"({self.scenario.name}, over {self.transport})",
                 f"    {bad.step.source}", *("  " + m for m in bad.message.splitlines())]
        if bad.exchanges:
            lines.append("  APDUs of the tap (card numbers masked):")
            lines += ["    " + line for x in bad.exchanges for line in _exchange_lines(x)]
        return "\n".join(lines)


def _exchange_lines(x: Exchange) -> list[str]:
    command = mask_pans(x.command.hex().upper())
    if x.response is None:
        answer = f"(no answer: {x.error or 'torn'})"
    else:
        answer = mask_pans(x.response.hex().upper())
    return [f">> {command}", f"<< {answer}"]


class StepFailed(Exception):
    """A step whose expectation was not met; the message says what was expected and seen."""


@dataclass
class _Presented:
    """What a reader holds after a tap: the tap's outcome, or the validator's decision."""
    card_name: str
    outcome: TapOutcome | object  # terminal.validator.Decision for program: validator
    exchanges: list[Exchange]
    message: str | None = None


@dataclass
class _ReaderState:
    spec: ReaderSpec
    field: Field
    context: TapContext
    pending: tuple = ()
    last: _Presented | None = None
    card_in_field: str | None = None
    validator: object | None = None  # terminal.run.Validator for program: validator
    workdir: Path | None = None  # the validator's journal lives here


class _Run:
    def __init__(self, scenario: Scenario, transport: str, stage: Stage):
        self.scenario = scenario
        self.transport = transport
        self.stage = stage
        self.cards: dict[str, object] = {}
        self.purses: dict[str, object] = {}  # card name -> DemoPurse
        self.readers: dict[str, _ReaderState] = {}
        self.last_reader: str | None = None
        self.now = scenario.now  # moved on by `advance`

    # setup ----------------------------------------------------------------------------
    def build_card(self, spec: CardSpec):
        o = spec.options
        if spec.type == "purse":
            demo = demo_purse_card(balance=o["balance"], currency=o["currency"], card_id=o["card_id"],
                                   uid=o.get("uid"), locked=o["locked"])
            self.purses[spec.name] = demo
            demo.card.name = spec.name
            return demo.card
        if spec.type == "emv":
            card = emv_card(o["uid"], pan=o["pan"], expiry=o["expiry"], name=o["holder"])
        elif spec.type == "uid":
            card = plain_uid_card(o["uid"], name=spec.name)
        elif spec.type == "scripted":
            rules = list(o["rules"])
            if "function" in o:
                rules.append(("*", o["function"]))
            return ScriptedCard(o["uid"], rules, default=o["default"], name=spec.name)
        elif spec.type == "replay":
            return ReplayCard(o["sessions"], match=o["match"], uid=o.get("uid"), name=spec.name)
        else:  # the loader admits only the types above
            raise AssertionError(spec.type)
        return card

    def identity(self, name: str) -> str:
        """What a deny list or a token expectation means by a card's name."""
        spec = self.scenario.cards[name]
        if spec.type == "purse":
            return spec.options["card_id"].hex()
        if spec.type == "emv":
            return pan_token(DEMO_TOKEN_KEY, spec.options["pan"])
        uid = self.cards[name].uid
        return uid_token(DEMO_TOKEN_KEY, uid) if uid else name

    def context(self, spec: ReaderSpec) -> TapContext:
        deny = frozenset(self.identity(d) if d in self.scenario.cards else d.lower() if len(d) == 16 else d
                         for d in spec.deny)
        return TapContext(fare=spec.fare, currency=spec.currency, terminal_id=spec.terminal_id,
                          issuer_keys=demo_issuer_keys(), token_key=DEMO_TOKEN_KEY, now=self.scenario.now,
                          deny=deny, nonce=spec.nonce)

    def open(self) -> None:
        for name, spec in self.scenario.cards.items():
            self.cards[name] = self.build_card(spec)
        for name, spec in self.scenario.readers.items():
            try:
                f = self.stage.open(self.transport)
            except (StageError, ReaderError, OSError) as e:
                raise StageError(f"{self.scenario.where(spec.line)}: reader {name!r} cannot be opened "
                                 f"over {self.transport}: {e}") from None
            state = self.readers[name] = _ReaderState(spec, f, self.context(spec))
            if spec.program == "validator":
                try:
                    self.open_validator(state)
                except Exception as e:  # a journal that cannot be written, settings it refuses
                    raise StageError(f"{self.scenario.where(spec.line)}: reader {name!r}: the validator "
                                     f"cannot start: {type(e).__name__}: {e}") from None

    def open_validator(self, state: _ReaderState) -> None:
        """The bus validator program (terminal.run.Validator) on this field, its journal in a temp dir,
        offline, its clock the scenario's."""
        from terminal.journal import Journal
        from terminal.run import Settings, Validator

        spec = state.spec
        state.workdir = Path(tempfile.mkdtemp(prefix="tapstack-scenario-"))
        settings = Settings(route=spec.route, stop=spec.stop, reader=self.transport, token_key=DEMO_TOKEN_KEY,
                            journal=state.workdir / "journal.db", fare=spec.fare, currency=spec.currency,
                            terminal_id=spec.terminal_id, issuer_keys=tuple(demo_issuer_keys().values()),
                            repeat_window=timedelta(seconds=spec.repeat_window))
        journal = Journal(settings.journal, spec.terminal_id)
        v = Validator(settings, state.field.reader, journal, clock=lambda: self.now, out=lambda line: None)
        v.ref.deny = state.context.deny
        state.validator = v

    def close(self) -> None:
        for state in self.readers.values():
            try:
                state.field.close()
            except Exception:  # closing one field must not leave the others open
                pass
            if state.validator is not None:
                state.validator.journal.close()
            if state.workdir is not None:
                shutil.rmtree(state.workdir, ignore_errors=True)

    # steps ----------------------------------------------------------------------------
    def reader(self, name: str | None) -> _ReaderState:
        if name is None:
            name = self.last_reader if self.last_reader else next(iter(self.readers))
        return self.readers[name]

    def run_step(self, step: Step) -> StepResult:
        handler = getattr(self, f"do_{step.action}")
        start = time.perf_counter()
        try:
            exchanges = handler(step.args) or []
            decision = self.reader(step.args["reader"]).last.outcome if step.action == "present" else None
            return StepResult(step, True, exchanges=exchanges, seconds=time.perf_counter() - start, decision=decision)
        except StepFailed as e:
            last = self.reader(step.args.get("reader")).last
            return StepResult(step, False, str(e), last.exchanges if last else [], time.perf_counter() - start)
        except Exception as e:  # a reader or transport failing: reported at the step, the run goes on to close
            return StepResult(step, False, f"{type(e).__name__}: {e}", [], time.perf_counter() - start)

    def _clear(self, state: _ReaderState) -> None:
        state.field.remove()
        if not state.field.reader.wait_for_removal(CARD_TIMEOUT):
            raise StepFailed(f"the reader still sees a card {CARD_TIMEOUT:g} s after it was taken away")
        state.card_in_field = None

    def do_present(self, args):
        name = args["card"]
        for other_name, other in self.readers.items():  # one card is in one field at a time
            if other.card_in_field == name and other_name != args["reader"]:
                self._clear(other)
        state = self.reader(args["reader"])
        self.last_reader = args["reader"] or next(n for n, s in self.readers.items() if s is state)
        card = self.cards[name]
        if state.last is not None:  # the card of the tap before leaves first (a fresh field costs nothing)
            self._clear(state)
        state.field.present(card)
        state.card_in_field = name
        session = state.field.reader.wait_for_card(CARD_TIMEOUT)
        if session is None:
            raise StepFailed(f"the reader saw no card within {CARD_TIMEOUT:g} s")
        mismatches = len(getattr(card, "mismatches", ()))
        recorder = TraceRecorder(session, None, reader=state.field.reader.name, started=self.now)
        if state.validator is not None:
            decision = state.validator.handle_card(recorder)
            state.pending = state.validator.pending
            state.last = _Presented(name, decision, recorder.exchanges, decision.message)
        else:
            outcome, state.pending = tap(recorder, replace(state.context, now=self.now), state.pending)
            state.last = _Presented(name, outcome, recorder.exchanges)
        if isinstance(card, ReplayCard) and self.scenario.cards[name].options["strict"]:
            new = card.mismatches[mismatches:]
            if new:
                raise StepFailed("the terminal sent commands the trace does not hold:\n  "
                                 + "\n  ".join(new))
        return recorder.exchanges

    def do_expect(self, args):
        state = self.reader(args.get("reader"))
        if state.last is None:
            raise StepFailed("expect: no card was presented to this reader yet")
        o = state.last.outcome
        seen = {"outcome": o.signal, "kind": o.kind, "reason": o.reason, "balance_after": o.balance_after,
                "amount": o.amount, "pending": len(state.pending), "apdus": len(state.last.exchanges),
                "message": state.last.message,
                "journalled": len(state.validator.journal.taps()) if state.validator is not None else None}
        wrong = []
        for key, expected in args.items():
            if key == "reader":
                continue
            if key == "balance":
                demo = self.purses.get(state.last.card_name)
                if demo is None:
                    raise StepFailed(f"balance: card {state.last.card_name!r} is not a purse")
                actual = demo.balance
            elif key == "token":
                actual = o.token
                if expected in self.scenario.cards:
                    expected_value = self.identity(expected)
                    if actual != expected_value:
                        wrong.append(f"token: expected the token of {expected!r}, seen {actual}")
                    continue
            else:
                actual = seen[key]
            if actual != expected:
                wrong.append(f"{key}: expected {expected}, seen {actual}")
        if wrong:
            detail = f"the tap: {o.kind} {o.signal} {o.reason}" + (f" ({o.detail})" if o.detail else "")
            raise StepFailed("\n".join(wrong + [detail]))
        return state.last.exchanges

    def do_advance(self, args):
        self.now += timedelta(seconds=args["seconds"])

    def do_remove(self, args):
        state = self.reader(args.get("reader"))
        self._clear(state)

    def do_tear_after(self, args):
        self.reader(args.get("reader")).field.tear_after(args["n"])

    def do_slow(self, args):
        self.reader(args.get("reader")).field.slow(args["seconds"])

    def do_wait(self, args):
        if "seconds" in args:
            time.sleep(args["seconds"])
            return
        for state in self.readers.values():  # bare `wait`: until every field that lost its card is empty
            if not state.field.card_side.presented and not state.field.reader.wait_for_removal(CARD_TIMEOUT):
                raise StepFailed(f"reader {state.spec.name!r} still sees a card after {CARD_TIMEOUT:g} s")


def run_scenario(scenario: Scenario, transport: str, stage: Stage) -> ScenarioResult:
    """Run every step over `transport` ("mock", "pcscd+vpcd", "nfcpy-udp"); stops at the first failure."""
    result = ScenarioResult(scenario, transport)
    run = _Run(scenario, transport, stage)
    try:
        try:
            run.open()
        except StageError as e:
            result.error = str(e)
            return result
        for step in scenario.steps:
            outcome = run.run_step(step)
            result.steps.append(outcome)
            if not outcome.ok:
                break
    finally:
        run.close()
    return result
