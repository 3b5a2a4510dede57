"""matrix.toml: what parses, and errors that name the key and its line."""

from __future__ import annotations

import pytest

from lorawb.errors import ConfigError
from lorawb.matrix.spec import parse_spec

GOOD = """\
[matrix]
run = "r1"
prompt = "{trigger}, {context}, {style}"
negative = "blurry, {style}"
controls = ["red hair, beach"]
zip = [["context", "style"]]

[axes]
checkpoint = [50, "last", "loras/other.safetensors"]
weight = [0, 0.5, 1]
context = ["forest", "bar"]
style = ["flat", "sketch"]
seed = [0, 1]

[view]
cols = ["checkpoint"]
pages = ["prompt"]
"""


def test_a_spec_parses_with_axes_in_file_order():
    spec = parse_spec(GOOD)
    assert list(spec.axes) == ["checkpoint", "weight", "context", "style", "seed"]
    assert spec.slots == ["context", "style"]
    assert spec.axes["checkpoint"] == [50, "last", "loras/other.safetensors"]
    assert spec.axes["weight"] == [0.0, 0.5, 1.0]
    assert spec.axis_names()[-1] == "prompt"  # control prompts add the prompt axis
    assert spec.matrix.zip == [["context", "style"]]


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_spec(text, path=None)
    return info.value


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("change", "key", "needle", "says"),
    [
        (("seed = [0, 1]", "seed = [0, 1]\nbogus = 3"), "axes.bogus", "bogus", "must be a list"),  # an axis is a list
        (('run = "r1"', 'run = "r1"\nstepz = 20'), "matrix.stepz", "stepz", "unknown key"),
        (("weight = [0, 0.5, 1]", 'weight = [0, "half"]'), "axes.weight", "weight =", "number"),
        (('style = ["flat", "sketch"]', 'style = ["flat"]'), "matrix.zip", "zip =", "same number of values"),
        (("seed = [0, 1]", "seed = [0, 1]\npose = ['standing']"), "axes.pose", "pose =", "the prompt has no {pose}"),
        (
            ('prompt = "{trigger}, {context}, {style}"', 'prompt = "{trigger}, {context}, {style}, {mood}"'),
            "matrix.prompt",
            "prompt =",
            "{mood} has no axis",
        ),
        (
            ('controls = ["red hair, beach"]', 'controls = ["{trigger} at the beach"]'),
            "matrix.controls",
            "controls =",
            "names the trigger",
        ),
        (('cols = ["checkpoint"]', 'cols = ["colour"]'), "view.cols", "cols =", "not an axis"),
        (("seed = [0, 1]", "seed = [0, 0]"), "axes.seed", "seed =", "appears twice"),
        (("seed = [0, 1]", "seed = []"), "axes.seed", "seed =", "at least 1"),
    ],
)
def test_errors_name_the_key_and_line(change, key, needle, says):
    text = GOOD.replace(*change)
    err = error_of(text)
    assert err.message.startswith(key), err.message
    assert says in err.message
    assert err.line == line_of(text, needle)


def test_a_toml_syntax_error_has_its_line():
    text = GOOD.replace("seed = [0, 1]", "seed = [0, 1")
    err = error_of(text)
    assert "invalid TOML" in err.message and err.line is not None and err.line >= line_of(text, "seed =")


def test_a_weight_axis_needs_loras():
    err = error_of('[matrix]\nprompt = "{trigger}"\n[axes]\nweight = [0, 1]\n')
    assert err.message.startswith("axes.weight") and "needs LoRAs" in err.message


def test_project_matrix_settings_are_validated_with_their_line(tmp_path):
    from lorawb.core.project import init_project
    from lorawb.matrix.settings import matrix_settings

    project = init_project(tmp_path / "p", trigger="zkx")
    text = project.config_path.read_text() + '\n[matrix]\nembedder = "models/clip"\ntop_k = 0\n'
    project.config_path.write_text(text)
    from lorawb.core.project import Project

    with pytest.raises(ConfigError) as info:
        matrix_settings(Project.load(project.root))
    assert info.value.message.startswith("matrix.top_k") and info.value.line == line_of(text, "top_k")
