"""Rendering and scanning QR codes: round trips through real images, and damaged images."""
import io
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import qrcode
import qrcode.util
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image, ImageFilter, ImageOps

from protocol import certs, ed25519, emvqr, signed_qr
from wallet import qr
from wallet.qr import ScanError

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
SPEC_EXAMPLE = (
    "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678"
    "520441115802CN5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京"
    "540523.7253031565502016233030412340603***0708A60086670902ME"
    "91320016A0112233449988770708123456786304A13A"
)


def bill(**changes):
    args = dict(biller_id="WATER-0042", bill_number="2026110012345", reference="ACCT88213",
                amount=12850, currency="CNY", merchant_name="Harbin Water", merchant_city="Harbin",
                expires_at=NOW + timedelta(days=30))
    return emvqr.bill_code(**{**args, **changes})


def photo_like(png: bytes, *, seed=7, size=1000, angle=10.0, noise=30.0, at=(200, 180)) -> Image.Image:
    """A code pasted on a grainy background, rotated, with Gaussian sensor noise."""
    rng = np.random.default_rng(seed)
    background = Image.fromarray(rng.normal(170, 25, (size, size)).clip(0, 255).astype(np.uint8))
    code = Image.open(io.BytesIO(png)).convert("L").rotate(angle, expand=True, fillcolor=255,
                                                            resample=Image.BILINEAR)
    background.paste(code, at)
    pixels = np.asarray(background, dtype=float) + rng.normal(0, noise, (size, size))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def image_bytes(image: Image.Image, fmt="PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


BILL_FIELDS = st.fixed_dictionaries({
    "biller_id": st.from_regex(r"[A-Z0-9\-]{1,20}", fullmatch=True),
    "bill_number": st.from_regex(r"[0-9]{1,25}", fullmatch=True),
    "reference": st.text(st.characters(codec="ascii", min_codepoint=0x20, max_codepoint=0x7E),
                         min_size=1, max_size=25),
    "amount": st.integers(1, 10 ** 11),
    "currency": st.sampled_from(["CNY", "HKD", "JPY", "USD", "BHD"]),
    "merchant_name": st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=25),
    "merchant_city": st.text(st.characters(codec="ascii", categories=("L",)), min_size=1, max_size=15),
    "local_name": st.text(st.characters(categories=("L", "N")), min_size=1, max_size=25),
    "expires_at": st.integers(1, 10 ** 7).map(lambda s: NOW + timedelta(seconds=s)),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BILL_FIELDS)
def test_bill_round_trip_through_png(fields):
    payload = emvqr.bill_code(**fields)
    scanned = qr.scan(qr.render_png(payload, box_size=3), require_emv=True)
    assert scanned.text == payload
    code = emvqr.read_tapstack(scanned.emv, NOW)
    assert code.kind == "bill"
    assert (code.merchant_id, code.bill_number, code.reference) == (
        fields["biller_id"], fields["bill_number"], fields["reference"])
    assert (code.amount, code.currency) == (fields["amount"], fields["currency"])
    assert code.expires_at == fields["expires_at"].replace(microsecond=0)
    assert (scanned.emv.name, scanned.emv.city) == (fields["merchant_name"], fields["merchant_city"])
    assert scanned.emv.language == {"00": "ZH", "01": fields["local_name"]}


def test_spec_example_with_chinese_survives_the_round_trip():
    scanned = qr.scan(qr.render_png(SPEC_EXAMPLE))
    assert scanned.text == SPEC_EXAMPLE
    assert scanned.emv.language["01"] == "最佳运输"


def test_symbol_uses_error_correction_m_and_a_quiet_zone_of_four():
    dark = qr.modules(bill())
    assert not dark[:4].any() and not dark[-4:].any() and not dark[:, :4].any() and not dark[:, -4:].any()
    assert dark[4, 4:11].all()  # the finder pattern starts right after the quiet zone
    found = __import__("zxingcpp").read_barcodes(Image.open(io.BytesIO(qr.render_png(bill()))))
    assert found[0].ec_level == "M"


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=400))
def test_symbol_is_the_one_qrcode_itself_makes(text):
    reference = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    reference.add_data(text)
    reference.make(fit=True)
    assert (qr.modules(text) == np.array(reference.get_matrix(), dtype=bool)).all()
    assert qr.penalty(np.array(reference.modules, dtype=bool)[None])[0] == qrcode.util.lost_point(reference.modules)
    assert qr.symbol(text).mask_pattern == reference.best_mask_pattern()  # this call relays the symbol


def test_png_is_box_size_pixels_a_module():
    dark = qr.modules(bill())
    image = Image.open(io.BytesIO(qr.render_png(bill(), box_size=5)))
    assert image.format == "PNG" and image.size == (dark.shape[1] * 5, dark.shape[0] * 5)


def test_svg_is_well_formed_and_one_millimetre_a_module():
    svg = qr.render_svg(bill())
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert root.get("width") == f"{qr.modules(bill()).shape[0]}mm"
    assert root.findall(".//{http://www.w3.org/2000/svg}path")


def test_write_by_suffix(tmp_path):
    assert qr.scan(qr.write(bill(), tmp_path / "bill.png")).text == bill()
    assert (qr.write(bill(), tmp_path / "bill.svg")).read_text().startswith("<")
    with pytest.raises(ValueError, match="use a .png or .svg"):
        qr.write(bill(), tmp_path / "bill.gif")


def test_photo_rotated_and_noisy_as_jpeg(tmp_path):
    photo = photo_like(qr.render_png(bill(), box_size=4))
    path = tmp_path / "photo.jpg"
    path.write_bytes(image_bytes(photo, "JPEG", quality=70))
    assert qr.scan(path, require_emv=True).emv.bill_number == "2026110012345"


def test_very_noisy_photo_is_read_by_the_blurred_retry():
    # Measured: with noise sigma 70 and 3-pixel modules the plain pass finds nothing.
    photo = photo_like(qr.render_png(bill(), box_size=3), noise=70)
    assert not any(b.valid for b in qr._read(photo))
    assert qr.read_text(image_bytes(photo)) == bill()


def test_no_qr_code(tmp_path):
    path = tmp_path / "noise.png"
    rng = np.random.default_rng(1)
    path.write_bytes(image_bytes(Image.fromarray(rng.integers(0, 256, (400, 400), dtype=np.uint8))))
    with pytest.raises(ScanError, match=f"^no QR code found in {path}$"):
        qr.read_text(path)


def test_blurred_beyond_reading():
    blurred = Image.open(io.BytesIO(qr.render_png(bill(), box_size=4))).convert("L").filter(
        ImageFilter.GaussianBlur(6))
    with pytest.raises(ScanError, match="no QR code found|could not be read"):
        qr.read_text(image_bytes(blurred))


def test_cropped_code():
    image = Image.open(io.BytesIO(qr.render_png(bill(), box_size=6))).convert("L")
    cropped = image.crop((0, 0, image.width, image.height * 55 // 100))
    with pytest.raises(ScanError) as err:
        qr.read_text(image_bytes(cropped))
    assert str(err.value) in ("no QR code found in the image",
                              "a QR code was found in the image but could not be read "
                              "(blurred, damaged or cut off)")


def test_damaged_code_says_it_was_found_but_unreadable():
    # Blank a band across the middle: the finder patterns remain, the data does not.
    image = Image.open(io.BytesIO(qr.render_png(bill(), box_size=6))).convert("L")
    pixels = np.array(image)
    pixels[pixels.shape[0] * 35 // 100:pixels.shape[0] * 60 // 100, :] = 255
    with pytest.raises(ScanError, match="found in the image but could not be read"):
        qr.read_text(image_bytes(Image.fromarray(pixels)))


def test_two_codes():
    first = Image.open(io.BytesIO(qr.render_png(bill(), box_size=3)))
    second = Image.open(io.BytesIO(qr.render_png(bill(bill_number="99"), box_size=3)))
    canvas = Image.new("L", (first.width + second.width + 40, max(first.height, second.height) + 20), 255)
    canvas.paste(first, (10, 10))
    canvas.paste(second, (first.width + 30, 10))
    with pytest.raises(ScanError, match="more than one QR code in the image"):
        qr.read_text(image_bytes(canvas))


def test_not_an_image(tmp_path):
    path = tmp_path / "bill.png"
    path.write_text("not really a picture")
    with pytest.raises(ScanError, match=f"^file is not an image: {path}$"):
        qr.scan(path)
    with pytest.raises(ScanError, match="no such file"):
        qr.scan(tmp_path / "missing.png")
    with pytest.raises(ScanError, match="is a directory"):
        qr.scan(tmp_path)


def test_a_signed_pay_code_is_not_an_emvco_payload():
    seed, issuer = bytes(range(1, 33)), bytes(range(32))
    cert = certs.issue(issuer, bytes(8), ed25519.public_key(seed), int(NOW.timestamp()) + 86400)
    text = signed_qr.pay_code(seed, cert, issued_at=NOW, nonce=bytes(8))
    png = qr.render_png(text, box_size=3)
    assert qr.scan(png) == qr.Scan(text, None)
    with pytest.raises(ScanError, match="^QR code found but not an EMVCo payload: field 00 .*starts with the payload format indicator"):
        qr.scan(png, require_emv=True)
    keys = {certs.key_id(ed25519.public_key(issuer)): ed25519.public_key(issuer)}
    assert signed_qr.verify(qr.read_text(png), keys, NOW).card_id == bytes(8)


def test_light_on_dark_code_is_read():
    image = Image.open(io.BytesIO(qr.render_png(bill(), box_size=4))).convert("L")
    assert qr.read_text(image_bytes(ImageOps.invert(image))) == bill()


def test_decode_command_describes_a_bill(tmp_path):
    from click.testing import CliRunner
    path = qr.write(bill(), tmp_path / "bill.png")
    result = CliRunner().invoke(qr.decode_command, [str(path)])
    assert result.exit_code == 0, result.output
    assert "amount     128.50 CNY" in result.output and "tapstack   bill WATER-0042" in result.output
    result = CliRunner().invoke(qr.decode_command, [str(path), "--text"])
    assert result.output == bill() + "\n"


def test_commands_fail_with_one_line(tmp_path):
    from click.testing import CliRunner
    (tmp_path / "notes.png").write_text("hello")
    for command, args, line in (
            (qr.decode_command, [str(tmp_path / "notes.png")], f"Error: file is not an image: {tmp_path / 'notes.png'}"),
            (qr.decode_command, [str(tmp_path / "none.png")], f"Error: no such file: {tmp_path / 'none.png'}"),
            (qr.render_command, ["x", str(tmp_path / "x.gif")], "Error: cannot write x.gif: use a .png or .svg file name"),
            (qr.render_command, ["9" * 8000, str(tmp_path / "x.png")], "Error: a payload of 8000 characters is too long for a QR code at error correction M")):
        result = CliRunner().invoke(command, args)
        assert result.exit_code == 1 and result.output.strip() == line, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_decode_command_says_why_a_payload_is_not_emvco(tmp_path):
    from click.testing import CliRunner
    broken = bill()[:-1] + ("0" if bill()[-1] != "0" else "1")
    result = CliRunner().invoke(qr.decode_command, [str(qr.write(broken, tmp_path / "b.png"))])
    assert result.exit_code == 0
    assert "not EMVCo  field 63 (CRC)" in result.output and "wrong CRC" in result.output


def test_the_wallet_has_one_scan_that_pays_and_one_decode_that_does_not(tmp_path):
    from click.testing import CliRunner
    from wallet.cli import cli
    path = qr.write(bill(), tmp_path / "bill.png")
    # decode needs no profile nor gateway: it cannot pay
    result = CliRunner().invoke(cli, ["decode", str(path), "--text"], env={"TAPSTACK_HOME": str(tmp_path)})
    assert result.exit_code == 0 and result.output == bill() + "\n"
    scan_help = CliRunner().invoke(cli, ["scan", "--help"]).output
    assert "--yes" in scan_help and "--text" not in scan_help


def test_decode_command_reads_a_national_code_liberally_and_prints_its_warnings(tmp_path):
    from click.testing import CliRunner
    promptpay = "00020101021229370016A000000677010111011300660000000005802TH530376454044.226304E469"
    result = CliRunner().invoke(qr.decode_command, [str(qr.write(promptpay, tmp_path / "pp.png"))])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "EMVCo merchant-presented code (dynamic), PromptPay (Thailand)"
    assert "amount     4.22 THB" in lines
    assert [line for line in lines if line.startswith("warning")] == [
        "warning    field 52 (merchant category code): missing: mandatory field",
        "warning    field 59 (merchant name): missing: mandatory field",
        "warning    field 60 (merchant city): missing: mandatory field"]
    assert lines[-1].startswith("tapstack   not payable here: field 26")


def test_decode_command_shows_the_local_name(tmp_path):
    from click.testing import CliRunner
    names = emvqr.names("杭州水务", "杭州", name_latin="Hangzhou Water", city_latin="Hangzhou",
                        fallback_name="x", fallback_city="CN")
    path = qr.write(bill(**names.code_args()), tmp_path / "bill.png")
    result = CliRunner().invoke(qr.decode_command, [str(path)])
    assert "merchant   Hangzhou Water, Hangzhou (CN), MCC 4900" in result.output
    assert "local name 杭州水务, 杭州 (ZH)" in result.output and "warning" not in result.output
