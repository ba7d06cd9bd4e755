"""The dashboard's SVG bar charts: named for screen readers, every number written as text,
bars in proportion, labels escaped."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from gateway.http.web import charts

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup) -> ET.Element:
    # The charts are inline HTML SVG (no namespace); give them one to parse as XML.
    return ET.fromstring(str(markup).replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))


def test_columns_are_an_image_with_a_name_a_description_and_each_value_as_text():
    svg = parse(charts.columns([("07", 30, "30"), ("08", 120, "120"), ("09", 0, "0")],
                               title="Taps per hour", desc="07: 30; 08: 120"))
    assert svg.get("role") == "img"
    ids = svg.get("aria-labelledby").split()
    assert [svg.find(f".//*[@id='{i}']").text for i in ids] == ["Taps per hour", "07: 30; 08: 120"]
    bars = svg.findall(f"{SVG}g")
    assert [b.find(f"{SVG}title").text for b in bars] == ["07: 30", "08: 120", "09: 0"]
    heights = [float(b.find(f"{SVG}rect").get("height")) for b in bars]
    assert heights[1] == 4 * heights[0] and heights[2] == 0
    values = [b.find(f"{SVG}text[@class='value']").text for b in bars]
    assert values == ["30", "120", None]  # an empty hour has no number floating over the axis


def test_bars_scale_to_the_largest_and_escape_labels():
    svg = parse(charts.bars([("R1", 600, "6.00 CNY"), ("<b>&", 150, "1.50 CNY")],
                            title="Revenue", desc="per route"))
    widths = [float(r.get("width")) for r in svg.iter(f"{SVG}rect")]
    assert widths[0] == 4 * widths[1] > 0
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "label"]
    assert labels == ["R1", "<b>&"]  # parsed back from escaped markup
    assert "<b>" not in str(charts.bars([("<b>", 1, "1")], title="t", desc="d"))


def test_an_all_zero_chart_draws_no_bars_and_no_division_by_zero():
    markup = str(charts.columns([("00", 0, "0")] * 24, title="Quiet day", desc="No taps."))
    assert re.findall(r'height="([\d.]+)"></rect>', markup) == ["0.0"] * 24
