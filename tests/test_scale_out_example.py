"""examples/scale_out.py, as docs/scale-out.md tells an operator to run it: haproxy in front
of two gateway nodes on a PostgreSQL primary with a synchronous standby, and the demo's
riders through it. Its ledger must be the same on the standby as on the primary."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "scale_out.py"


@pytest.fixture(autouse=True)
def machine_pcscd_free(tapstack_stage):
    """The example's demo starts the machine's one pcscd itself: the session's is stopped first."""
    tapstack_stage.close()


def test_the_scale_out_example_runs_the_city_through_two_nodes_and_a_standby():
    done = subprocess.run([sys.executable, str(EXAMPLE), "--riders", "6"], capture_output=True, text=True,
                          timeout=600)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "2 gateway nodes on ports" in out and "haproxy on http://127.0.0.1:" in out
    assert "ledger check  ok" in out
    primary, standby = map(int, re.search(r"ledger transfers: (\d+) on the primary, (\d+) on the synchronous"
                                          r" standby", out).groups())
    assert primary == standby > 0
    assert "('standby1', 'streaming', 'sync')" in out
