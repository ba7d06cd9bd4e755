"""Each program installs with its own extra (pyproject.toml): a fresh virtual environment
with tapstack[gateway], [terminal] or [wallet] runs its program's --help and holds none of
the other programs' drivers; the base holds what protocol/ needs and no program's.

Kept fast: tapstack's wheel is built once, the dependencies' wheels once per dependency
list (in a cache kept between runs; pip's own cache keeps pyscard's build), and the four
environments are installed from them with --no-index, two at a time, without bytecode."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tapstack-test" / "wheelhouse"
EXTRAS = {  # extra -> (a command that must work, modules it must not have)
    "": (["python", "-c", "import protocol.uplink, protocol.purse, protocol.emv"],
         ("flask", "smartcard", "nfc", "click")),
    "gateway": (["tapstack", "gateway", "--help"], ("smartcard", "nfc", "numpy")),
    "terminal": (["tapstack", "terminal", "validator", "--help"], ("flask", "psycopg", "gunicorn")),
    "wallet": (["tapstack", "wallet", "--help"], ("flask", "psycopg", "smartcard")),
}


def run(argv, **options) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600, **options)
    assert done.returncode == 0, f"{' '.join(map(str, argv))}\n{done.stdout}\n{done.stderr}"
    return done


def wheelhouse(own_wheel: Path) -> Path:
    """The dependencies' wheels of tapstack[all], built once per dependency list."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    key = hashlib.sha256(repr((project["dependencies"], project["optional-dependencies"])).encode()).hexdigest()
    house = CACHE / key[:16]
    if not (house / "complete").exists():
        run(PIP + ["wheel", "-q", "-w", house, f"{own_wheel}[all]"])
        for copy in house.glob("tapstack-*.whl"):  # tapstack itself comes from this run's build
            copy.unlink()
        (house / "complete").touch()
    return house


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("extras")
    source = base / "source"  # built from a copy: a build writes build/ and *.egg-info beside its sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("protocol", "gateway", "terminal", "wallet", "tapstack"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    run(PIP + ["wheel", "-q", "--no-deps", "-w", base / "own", source])
    own = next((base / "own").glob("tapstack-*.whl"))
    house = wheelhouse(own)

    def install(extra: str) -> Path:
        env = base / (extra or "base")
        run([sys.executable, "-m", "venv", "--without-pip", env])
        run(PIP + ["--python", env / "bin" / "python", "install", "-q", "--no-compile", "--no-index",
                   "--find-links", house, f"{own}[{extra}]" if extra else own])
        return env

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(EXTRAS, pool.map(install, EXTRAS)))


@pytest.mark.parametrize("extra", list(EXTRAS), ids=lambda e: e or "base")
def test_an_extra_runs_its_program_and_holds_nothing_of_the_others(installed, extra):
    env = installed[extra]
    command, absent = EXTRAS[extra]
    done = run([env / "bin" / command[0], *command[1:]], cwd=env)  # not the source tree: the installed code
    assert extra == "" or "Usage:" in done.stdout
    probe = "import importlib.util, sys; print([m for m in sys.argv[1:] if importlib.util.find_spec(m)])"
    found = run([env / "bin" / "python", "-c", probe, *absent], cwd=env).stdout.strip()
    assert found == "[]", f"{extra or 'base'} installs {found}"
