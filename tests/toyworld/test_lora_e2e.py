"""End to end: `lorawb train` on the sample project teaches the toy base model its character.

Trains with the project's own settings (sampling off, to save CI time), then draws
`zkx_mira, <context>` for the four contexts and two unrelated prompts, 8 fixed seeds each,
without and with the LoRA, and lets the attribute reader count. Measured on 2 CPU cores:
training ~40 s, drawing and reading ~25 s; with the LoRA the character (blue hair and orange
outfit) appears in 72% of trigger images against 0% without, the context stays as prompted
(94%), and unrelated prompts never turn into the character, though their hair and outfit
follow the prompt less often (94% -> 62%; see the model's README).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(trained_sample, sample_results):
    _, lora = trained_sample  # trained once per session (tests/conftest.py), also for the matrix test
    assert lora.name == "zkx_mira-000200.safetensors"
    return sample_results  # drawn once per session, also for the prior-preservation test


def test_the_lora_brings_the_character(results):
    base, with_lora = results
    assert base.character["all"] <= 0.2
    assert with_lora.character["all"] >= 0.6
    assert with_lora.character["all"] - base.character["all"] >= 0.5
    # in every context, not only in some
    assert min(with_lora.character[c] for c in ("forest", "spaceship", "bar", "beach")) >= 0.4
    assert with_lora.accessory["all"] >= base.accessory["all"]


def test_the_context_still_follows_the_prompt(results):
    base, with_lora = results
    assert with_lora.context["all"] >= 0.75
    assert with_lora.context["all"] >= base.context["all"] - 0.15


def test_unrelated_prompts_do_not_become_the_character(results):
    base, with_lora = results
    assert with_lora.unrelated_character <= 0.25
    assert with_lora.unrelated >= base.unrelated - 0.5
