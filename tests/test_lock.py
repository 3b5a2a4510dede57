"""requirements.lock: the exact versions the tests run on, in step with pyproject.toml's ranges.

A new release of a dependency once turned a fresh clone's suite red; installs come from the lock
(scripts/env.sh), refreshed on purpose with scripts/lock. These tests fail when a dependency is added
to pyproject.toml without refreshing the lock, or the lock pins a version pyproject.toml forbids.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

import pytest
import tomlkit
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
# Installed by scripts/env.sh itself (torch, by the machine's GPU) or the venv's own tools.
NOT_LOCKED = {"torch", "triton", "lorawb", "pip", "setuptools", "wheel"}


def lock_pins(text: str, env: dict[str, str]) -> dict[str, str]:
    """name -> exact version of the lock's lines whose markers hold in ``env``."""
    pins: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        (spec,) = req.specifier
        assert spec.operator == "==", f"requirements.lock: {line!r} is not an exact pin"
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def declared() -> list[Requirement]:
    project = tomlkit.parse((ROOT / "pyproject.toml").read_text(encoding="utf-8")).unwrap()["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in ("test", "gpu", "tagger"):
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return reqs


@pytest.mark.parametrize("python", ["3.10", "3.11", "3.12"])
def test_every_declared_dependency_is_pinned_within_its_range(python):
    env = default_environment() | {"python_version": python, "python_full_version": f"{python}.0"}
    pins = lock_pins(LOCK.read_text(encoding="utf-8"), env)
    for req in declared():
        name = canonicalize_name(req.name)
        if name in NOT_LOCKED:
            continue
        assert name in pins, f"{req.name} is in pyproject.toml but not in requirements.lock: run scripts/lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {req.name}=={pins[name]} for Python {python}, outside pyproject's {req.specifier}"
        )


def test_lock_pins_reject_a_loose_line():
    with pytest.raises(AssertionError, match="not an exact pin"):
        lock_pins("numpy>=1.24\n", default_environment())
    assert lock_pins(
        "a==1 ; python_full_version < '3.11'\na==2 ; python_full_version >= '3.11'\n",
        {**default_environment(), "python_full_version": "3.11.7"},
    ) == {"a": "2"}


@pytest.mark.skipif(os.environ.get("LORAWB_LOCK") == "none", reason="scripts/test-latest installs the newest releases")
def test_the_environment_under_test_is_the_locked_one():
    """Every installed package the lock pins is at its pinned version (a package the lock does not
    know, such as what a benchmark needs, may be there too)."""
    pins = lock_pins(LOCK.read_text(encoding="utf-8"), default_environment())
    wrong = []
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        if name in pins and pins[name] != dist.version:
            wrong.append(f"{name} {dist.version} (lock: {pins[name]})")
    assert not wrong, "installed versions differ from requirements.lock (rerun scripts/test): " + ", ".join(
        sorted(wrong)
    )
