"""`tapstack wallet new-purse` and `tapstack wallet purse`: one line out, one clear error."""
import json

from click.testing import CliRunner

from protocol.purse import RECEIPT_SIZE, debit_command
from protocol.apdu import parse_command
from wallet.purse import PurseApplet
from wallet.testcards import new_purse_command, show_purse_command


def test_new_purse_then_show_it(tmp_path):
    path = tmp_path / "card.json"
    made = CliRunner().invoke(new_purse_command, [str(path), "--balance", "750", "--uid", "04112233445566"])
    assert made.exit_code == 0, made.output
    assert "purse card 5441500000000001, uid 04112233445566, 750 CNY" in made.output
    applet = PurseApplet.from_file(path)
    assert (applet.state.balance, applet.state.currency) == (750, "CNY")
    applet.process(parse_command(debit_command(120, "CNY", b"BUS00042", b"12345678", 1_798_761_600)))
    shown = CliRunner().invoke(show_purse_command, [str(path)])
    assert shown.exit_code == 0
    assert "630 CNY  counter 1  active" in shown.output
    assert "debit      120  balance     630  2027-01-01 00:00:00Z  BUS00042" in shown.output


def test_new_purse_never_overwrites_a_wallet(tmp_path):
    path = tmp_path / "card.json"
    path.write_text("{}")
    result = CliRunner().invoke(new_purse_command, [str(path)])
    assert result.exit_code == 1 and "already exists" in result.output
    assert path.read_text() == "{}"


def test_bad_arguments_and_files_are_one_line_errors(tmp_path):
    runner = CliRunner()
    bad_id = runner.invoke(new_purse_command, [str(tmp_path / "a.json"), "--card-id", "0102"])
    assert bad_id.exit_code == 2 and "8 bytes" in bad_id.output and "Traceback" not in bad_id.output
    missing = runner.invoke(show_purse_command, [str(tmp_path / "none.json")])
    assert missing.exit_code == 1 and missing.output.strip() == \
        f"Error: cannot read wallet file {tmp_path / 'none.json'}: No such file or directory"


def test_show_survives_a_damaged_receipt_log(tmp_path):
    path = tmp_path / "card.json"
    CliRunner().invoke(new_purse_command, [str(path)])
    doc = json.loads(path.read_text())
    doc["purse"]["receipts"] = ["ff" * RECEIPT_SIZE]
    path.write_text(json.dumps(doc))
    shown = CliRunner().invoke(show_purse_command, [str(path)])
    assert shown.exit_code == 0 and "unreadable receipt: unknown receipt version 255" in shown.output
