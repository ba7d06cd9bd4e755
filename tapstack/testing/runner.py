"""Run a loaded scenario over one transport: fields, cards, steps, expectations.

`run_scenario(scenario, transport, stage)` opens a Field per reader on the Stage, builds
fresh cards from their specs, runs the steps in order and stops at the first that fails.

A `present` step brings the card into a reader's field and the reader connects. A reader
with `program: tap` then taps it (terminal.tap.tap, with that reader's fare, currency and
deny list and the scenario's clock); `program: validator` runs the bus validator on it;
`program: none` does nothing more, for the generic steps (select, send, call) to talk to
the card. Every exchange goes through terminal.trace.TraceRecorder, so a failing step
shows the APDUs of the card's session, card numbers masked.
"""
from __future__ import annotations

import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

from protocol.apdu import CommandAPDU, MalformedAPDU, parse_response, select_by_name
from protocol.tokens import pan_token, uid_token
from tapstack.testing.cardfile import BuiltCard, build_card, save_card
from tapstack.testing.channel import CardChannel
from tapstack.testing.expect import PatternError, capture, check_answer, hex_bytes, pattern_of, substitute
from tapstack.testing.fields import Field, Stage, StageError
from tapstack.testing.replay import ReplayCard
from tapstack.testing.scenario import ReaderSpec, Scenario, Step
from terminal.readers.base import CardRemoved, ReaderError
from terminal.tap import TapContext, TapOutcome, tap
from terminal.trace import Exchange, TraceRecorder
from wallet.emulate import mask_pans
from wallet.testcards import DEMO_TOKEN_KEY, demo_issuer_keys

CARD_TIMEOUT = 5.0  # seconds a reader may take to see a card come or go
SHOWN_EXCHANGES = 24  # the last exchanges of a session shown with a failing step


@dataclass
class StepResult:
    step: Step
    ok: bool
    message: str = ""
    exchanges: list[Exchange] = field(default_factory=list)
    seconds: float = 0.0
    tap: bool = True  # the exchanges are one tap's (else: the card's session so far)
    decision: object = None  # a present step's TapOutcome (program: validator: its Decision)


@dataclass
class ScenarioResult:
    scenario: Scenario
    transport: str
    steps: list[StepResult] = field(default_factory=list)
    error: str = ""  # the run could not start (a transport missing)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error and all(s.ok for s in self.steps) and len(self.steps) == len(self.scenario.steps)

    @property
    def failure(self) -> StepResult | None:
        return next((s for s in self.steps if not s.ok), None)

    def report(self) -> str:
        """What failed, where, expected and seen, and the APDUs around it; "" when it passed."""
        if self.error:
            return f"{self.error} ({self.scenario.name})"
        bad = self.failure
        if bad is None:
            return ""
        lines = [f"{self.scenario.where(bad.step.line)}: step {bad.step.action!r} failed "
                 f"({self.scenario.name}, over {self.transport})",
                 f"    {bad.step.source}", *("  " + m for m in bad.message.splitlines())]
        if bad.exchanges:
            lines += exchange_report(bad.exchanges, "the tap" if bad.tap else "the card's session")
        return "\n".join(lines)


def exchange_report(exchanges: list[Exchange], what: str) -> list[str]:
    shown = exchanges[-SHOWN_EXCHANGES:]
    lines = [f"  APDUs of {what} (card numbers masked):"]
    if len(exchanges) > len(shown):
        lines.append(f"    ... {len(exchanges) - len(shown)} earlier exchanges")
    lines += ["    " + line for x in shown for line in exchange_lines(x)]
    return lines


def exchange_lines(x: Exchange) -> list[str]:
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
    """What a reader holds after a card came: the tap's outcome or the validator's decision (None
    for program: none) and the card's session."""
    card_name: str
    outcome: TapOutcome | object | None
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
    session: TraceRecorder | None = None  # the card in the field, connected
    validator: object | None = None  # terminal.bus.Validator for program: validator
    workdir: Path | None = None  # the validator's journal lives here


def _complaints(card) -> tuple[int, int]:
    return len(getattr(card, "errors", ())), len(getattr(card, "mismatches", ()))


class _Run:
    def __init__(self, scenario: Scenario, transport: str, stage: Stage):
        self.scenario = scenario
        self.transport = transport
        self.stage = stage
        self.built: dict[str, BuiltCard] = {}
        self.readers: dict[str, _ReaderState] = {}
        self.last_reader: str | None = None
        self.now = scenario.now  # moved on by `advance`
        self.values: dict[str, str] = dict(scenario.variables)

    # setup ----------------------------------------------------------------------------
    def identity(self, name: str) -> str:
        """What a deny list or a token expectation means by a card's name."""
        spec = self.scenario.cards[name]
        if spec.type == "purse":
            return spec.options["card_id"].hex()
        if spec.type == "emv":
            return pan_token(DEMO_TOKEN_KEY, spec.options["pan"])
        uid = self.built[name].card.uid
        return uid_token(DEMO_TOKEN_KEY, uid) if uid else name

    def context(self, spec: ReaderSpec) -> TapContext:
        deny = frozenset(self.identity(d) if d in self.scenario.cards else d.lower() if len(d) == 16 else d
                         for d in spec.deny)
        return TapContext(fare=spec.fare, currency=spec.currency, terminal_id=spec.terminal_id,
                          issuer_keys=demo_issuer_keys(), token_key=DEMO_TOKEN_KEY, now=self.scenario.now,
                          deny=deny, nonce=spec.nonce)

    def open(self) -> None:
        for name, spec in self.scenario.cards.items():
            try:
                self.built[name] = build_card(spec)
            except Exception as e:  # a user's card class failing in its constructor
                raise StageError(f"{self.scenario.where(spec.line)}: card {name!r} cannot be built: "
                                 f"{type(e).__name__}: {e}") from None
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
        """The bus validator program (terminal.bus.Validator) on this field, its journal in a temp dir,
        offline, its clock the scenario's."""
        from terminal.bus import Validator
        from terminal.journal import Journal
        from terminal.settings import Settings

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
        before = {n: _complaints(b.card) for n, b in self.built.items()}
        start = time.perf_counter()
        try:
            exchanges = handler(step.args) or []
            self.card_complaints(before)
            decision = self.reader(step.args.get("reader")).last.outcome if step.action == "present" else None
            return StepResult(step, True, exchanges=exchanges, seconds=time.perf_counter() - start, decision=decision)
        except StepFailed as e:
            state = self.reader(step.args.get("reader"))
            last = state.last
            tap = last is not None and last.outcome is not None and step.action in ("present", "expect")
            exchanges = last.exchanges if tap else state.session.exchanges if state.session else []
            return StepResult(step, False, str(e), list(exchanges), time.perf_counter() - start, tap=tap)
        except Exception as e:  # a reader or transport failing: reported at the step, the run goes on to close
            return StepResult(step, False, f"{type(e).__name__}: {e}", [], time.perf_counter() - start)

    def card_complaints(self, before: dict[str, tuple[int, int]]) -> None:
        """Fail the step when a card's own code raised, or a strict script or trace got a command
        it does not hold."""
        found = []
        for name, built in self.built.items():
            card, (errors_before, mismatches_before) = built.card, before[name]
            errors = getattr(card, "errors", [])[errors_before:]
            mismatches = getattr(card, "mismatches", [])[mismatches_before:]
            if mismatches and self.scenario.cards[name].options.get("strict", True):
                what = ("the terminal sent commands the trace does not hold" if isinstance(card, ReplayCard)
                        else f"card {name!r} got commands out of its script")
                found.append(f"{what}:\n  " + "\n  ".join(mismatches))
            if errors:
                found.append(f"card {name!r} failed to answer (answered 6F00):\n  " + "\n  ".join(errors))
        if found:
            raise StepFailed("\n".join(found))

    def _clear(self, state: _ReaderState) -> None:
        state.field.remove()
        if not state.field.reader.wait_for_removal(CARD_TIMEOUT):
            raise StepFailed(f"the reader still sees a card {CARD_TIMEOUT:g} s after it was taken away")
        state.card_in_field = None
        state.session = None

    def do_present(self, args):
        name = args["card"]
        for other_name, other in self.readers.items():  # one card is in one field at a time
            if other.card_in_field == name and other_name != args["reader"]:
                self._clear(other)
        state = self.reader(args["reader"])
        self.last_reader = args["reader"] or next(n for n, s in self.readers.items() if s is state)
        card = self.built[name].card
        if state.last is not None or state.card_in_field is not None:  # the card before leaves first
            self._clear(state)
        state.field.present(card)
        state.card_in_field = name
        session = state.field.reader.wait_for_card(CARD_TIMEOUT)
        if session is None:
            raise StepFailed(f"the reader saw no card within {CARD_TIMEOUT:g} s")
        recorder = TraceRecorder(session, None, reader=state.field.reader.name, started=self.now)
        state.session = recorder
        if state.validator is not None:
            decision = state.validator.handle_card(recorder)
            state.pending = state.validator.pending
            state.last = _Presented(name, decision, recorder.exchanges, decision.message)
        elif state.spec.program == "tap":
            outcome, state.pending = tap(recorder, replace(state.context, now=self.now), state.pending)
            state.last = _Presented(name, outcome, recorder.exchanges)
        else:
            state.last = _Presented(name, None, recorder.exchanges)
        return list(recorder.exchanges)

    def do_expect(self, args):
        state = self.reader(args.get("reader"))
        if state.last is None:
            raise StepFailed("expect: no card was presented to this reader yet")
        wrong = self.expect_card(state, args)
        tap_keys = [k for k in args if k not in ("reader", "atr", "uid")]
        if not tap_keys:
            if wrong:
                raise StepFailed("\n".join(wrong))
            return list(state.last.exchanges)
        o = state.last.outcome
        if o is None:
            raise StepFailed(f"{tap_keys[0]}: reader {state.spec.name!r} runs no program (program: none): "
                             "nothing was tapped")
        seen = {"outcome": o.signal, "kind": o.kind, "reason": o.reason, "balance_after": o.balance_after,
                "amount": o.amount, "pending": len(state.pending), "apdus": len(state.last.exchanges),
                "message": state.last.message,
                "journalled": len(state.validator.journal.taps()) if state.validator is not None else None}
        for key in tap_keys:
            expected = args[key]
            if key == "balance":
                purse = self.built[state.last.card_name].purse
                if purse is None:
                    raise StepFailed(f"balance: card {state.last.card_name!r} is not a purse")
                actual = purse.balance
            elif key == "token":
                actual = o.token
                if expected in self.scenario.cards:
                    if actual != self.identity(expected):
                        wrong.append(f"token: expected the token of {expected!r}, seen {actual}")
                    continue
            else:
                actual = seen[key]
            if actual != expected:
                wrong.append(f"{key}: expected {expected}, seen {actual}")
        if wrong:
            detail = f"the tap: {o.kind} {o.signal} {o.reason}" + (f" ({o.detail})" if o.detail else "")
            raise StepFailed("\n".join(wrong + [detail]))
        return list(state.last.exchanges)

    def expect_card(self, state: _ReaderState, args) -> list[str]:
        wrong = []
        for key in ("atr", "uid"):
            if key not in args:
                continue
            if state.session is None:
                raise StepFailed(f"{key}: no card is in the field of reader {state.spec.name!r}")
            seen = getattr(state.session, key) or b""
            pattern = self.pattern(args[key], key)
            if not pattern.matches(seen):
                wrong.append(f"{key}: expected {pattern}, seen {seen.hex().upper() or '(none)'}")
        return wrong

    def pattern(self, value, what: str):
        try:
            return pattern_of(substitute(value, self.values) if isinstance(value, str) else value, what)
        except KeyError as e:
            raise StepFailed(f"{what}: variable {e.args[0]!r} is not set (the call steps before did not set it)")
        except PatternError as e:
            raise StepFailed(str(e)) from None

    # the generic reader steps ---------------------------------------------------------
    def session(self, args) -> tuple[_ReaderState, TraceRecorder]:
        state = self.reader(args.get("reader"))
        if args.get("reader"):
            self.last_reader = args["reader"]
        if state.session is None:
            raise StepFailed(f"no card is in the field of reader {state.spec.name!r}: present one first "
                             "(- present: CARD)")
        return state, state.session

    def text(self, value: str, what: str) -> bytes:
        try:
            return hex_bytes(substitute(value, self.values), what)
        except KeyError as e:
            raise StepFailed(f"{what}: variable {e.args[0]!r} is not set (the call steps before did not set it)")
        except PatternError as e:
            raise StepFailed(str(e)) from None

    def exchange(self, args, command: bytes):
        state, session = self.session(args)
        try:
            answer = parse_response(session.transmit(command))
        except CardRemoved as e:
            raise StepFailed(f"the card left the field before it answered ({e})") from None
        except ReaderError as e:
            raise StepFailed(f"the reader failed: {e}") from None
        except MalformedAPDU as e:
            raise StepFailed(f"the card's answer is not a response APDU: {e}") from None
        try:
            wrong = check_answer(answer, args["expect"], self.values)
        except KeyError as e:
            raise StepFailed(f"variable {e.args[0]!r} is not set (the call steps before did not set it)")
        except PatternError as e:
            raise StepFailed(str(e)) from None
        if wrong:
            raise StepFailed("\n".join(wrong))
        for name, source in args["capture"].items():
            try:
                self.values[name] = capture(answer, source)
            except PatternError as e:
                raise StepFailed(f"capture {name}: {e}") from None
        return list(session.exchanges)

    def do_select(self, args):
        aid = self.text(args["aid"], "aid")
        return self.exchange(args, select_by_name(aid).to_bytes())

    def do_send(self, args):
        command = self.text(args["apdu"], "apdu")
        if "data" in args or "le" in args:
            data = self.text(args["data"], "data") if "data" in args else b""
            command = CommandAPDU(*command, data, args.get("le")).to_bytes()
        return self.exchange(args, command)

    def do_call(self, args):
        state, session = self.session(args)
        channel = CardChannel(session, self.values, state.field.reader.name, self.transport)
        try:
            result = args["function"](channel, **args["args"])
        except StepFailed:
            raise
        except AssertionError as e:
            raise StepFailed(f"{args['name']} failed: {_user_frame(e)}{e or ''}".rstrip(": ")) from None
        except CardRemoved as e:
            raise StepFailed(f"{args['name']}: the card left the field ({e})") from None
        except Exception as e:  # the user's code: whatever it raises fails this step, in one line
            raise StepFailed(f"{args['name']} raised {type(e).__name__}: {e} ({_user_frame(e).rstrip(': ')})") \
                from None
        if result is not None:
            if not isinstance(result, dict):
                raise StepFailed(f"{args['name']} returned {type(result).__name__}: return None or a dict of "
                                 "new variables")
            for key, value in result.items():
                if isinstance(value, (bytes, bytearray)):
                    value = bytes(value).hex().upper()
                if not isinstance(value, str):
                    raise StepFailed(f"{args['name']} returned {key}={value!r}: a variable is bytes or hex text")
                self.values[key] = value.replace(" ", "").upper()
        return list(session.exchanges)

    def do_save(self, args):
        path = self.scenario.path.parent / args["file"]
        try:
            save_card(self.built[args["card"]], path)
        except OSError as e:
            raise StepFailed(f"cannot write {path}: {e.strerror or e}") from None

    # the field ------------------------------------------------------------------------
    def do_advance(self, args):
        self.now += timedelta(seconds=args["seconds"])

    def do_remove(self, args):
        self._clear(self.reader(args.get("reader")))

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


def _user_frame(error: BaseException) -> str:
    """ "checks.py:12 `assert points > 0`: " for the user's line that raised."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "tapstack/testing" not in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    code = f" `{f.line}`" if f.line else ""
    return f"{Path(f.filename).name}:{f.lineno}{code}: "


def run_scenario(scenario: Scenario, transport: str, stage: Stage) -> ScenarioResult:
    """Run every step over `transport` ("mock", "pcscd+vpcd", "nfcpy-udp"); stops at the first failure."""
    result = ScenarioResult(scenario, transport)
    start = time.perf_counter()
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
        result.seconds = time.perf_counter() - start
    return result
