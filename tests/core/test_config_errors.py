"""lorawb.toml errors name the file, the line and the key, and say what is expected."""

from __future__ import annotations

import pytest

from lorawb.cli import main
from lorawb.core.project import Project, init_project
from lorawb.errors import ConfigError


def load_with(tmp_path, text: str) -> ConfigError:
    (tmp_path / "lorawb.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Project.load(tmp_path)
    return info.value


def test_invalid_toml_syntax(tmp_path):
    err = load_with(tmp_path, '[project]\nname = "x"\ntrigger = zkx\n')
    assert (err.path, err.line) == (tmp_path / "lorawb.toml", 3)
    # lorawb's own parts: the file, the line and the column, and its hint (the parser's detail between them is its own)
    assert str(err).startswith(f"{tmp_path / 'lorawb.toml'}:3: invalid TOML: ")
    assert err.message.endswith("(column 10)")
    assert "strings need quotes" in err.hint


def test_unclosed_table_header(tmp_path):
    err = load_with(tmp_path, '[project]\nname = "x"\n\n[train\nmax_steps = 3\n')
    assert err.line == 4
    assert "invalid TOML" in err.message


def test_repeated_key_is_named_with_its_line(tmp_path):
    err = load_with(
        tmp_path,
        '[project]\nname = "x"\n\n[ui]\ntheme = "a"\n\n[project.x]\n[triage]\ndup_threshold = 1\ndup_threshold = 2\n',
    )
    assert err.line == 10
    assert err.message == 'invalid TOML: key "dup_threshold" appears twice in [triage] (first on line 9)'
    assert err.hint == "a key may appear only once per table; remove or rename one of them"


def test_unknown_key_lists_the_known_keys(tmp_path):
    err = load_with(tmp_path, '[project]\nname = "x"\n\n[triage]\ndup_treshold = 5\n')
    assert err.line == 5
    assert err.message == "triage.dup_treshold: unknown key"
    assert err.hint == "known keys here: dup_threshold, keep_folder"


def test_unknown_top_level_table(tmp_path):
    err = load_with(tmp_path, '[project]\nname = "x"\n\n[colours]\na = 1\n')
    assert (err.line, err.message) == (4, "colours: unknown key")
    assert "project" in err.hint and "triage" in err.hint and "train" in err.hint


def test_wrong_type(tmp_path):
    err = load_with(tmp_path, '[project]\nname = "x"\nresolution = "big"\n')
    assert err.line == 3
    assert err.message == "project.resolution: must be a whole number (got 'big')"


def test_out_of_range_and_the_others_are_listed(tmp_path):
    err = load_with(tmp_path, '[project]\nresolution = 4\nmin_resolution = "a"\n[ui]\nimages = "kitty"\n')
    assert err.line == 2
    assert err.message == (
        "project.resolution: must be at least 8 (got 4); also check project.min_resolution, ui.images"
    )


def test_trigger_with_a_comma(tmp_path):
    err = load_with(tmp_path, '# settings\n[project]\nname = "x"\ntrigger = "zkx, mira"\n')
    assert err.line == 4
    assert err.message == (
        "project.trigger: the trigger must be a single tag (no commas or newlines) (got 'zkx, mira')"
    )


def test_dotted_keys_and_inline_tables_get_a_line(tmp_path):
    err = load_with(tmp_path, 'project.name = "x"\nproject.resolution = "no"\n')
    assert err.line == 2
    err = load_with(tmp_path, '[tags]\ngroups = { context = "forest" }\n')
    assert err.message.startswith("tags.groups.context: must be a list")
    assert err.line == 2


def test_legacy_encoding_is_read(tmp_path):
    (tmp_path / "lorawb.toml").write_bytes('[project]\nname = "café"\n'.encode("latin-1"))
    assert Project.load(tmp_path).name == "café"


def test_cli_prints_the_error_on_one_line(tmp_path, capsys):
    (tmp_path / "lorawb.toml").write_text('[project]\ntrigger = "a,b"\n', encoding="utf-8")
    assert main(["doctor", str(tmp_path)]) == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert first == (
        f"lorawb: {tmp_path / 'lorawb.toml'}:2: project.trigger: "
        "the trigger must be a single tag (no commas or newlines) (got 'a,b')"
    )


def test_save_setting_validates_and_keeps_comments(tmp_path):
    project = init_project(tmp_path / "p", trigger="zkx")
    project.save_setting("project.min_resolution", 300)
    text = project.config_path.read_text(encoding="utf-8")
    assert "min_resolution = 300" in text
    assert "# Images whose short side is below this are flagged" in text
    with pytest.raises(ConfigError, match="project.resolution: must be at least 8"):
        project.save_setting("project.resolution", 4)
    assert Project.load(project.root).config.project.resolution == 512  # nothing written
    project.save_setting("project.min_resolution", 320)  # the failed change left nothing behind
    assert Project.load(project.root).config.project.resolution == 512
    assert Project.load(project.root).config.project.min_resolution == 320
