"""Training config: defaults from lorawb.toml, config files, --set overrides, errors naming the key."""

from __future__ import annotations

import pytest

from lorawb.core.project import Project
from lorawb.errors import ConfigError
from lorawb.train.config import TrainConfig, config_diff, load_run_config, resolve_config
from tests.train.conftest import make_project


@pytest.fixture
def project(tmp_path):
    return Project.load(make_project(tmp_path / "proj", "models/tiny"))


def test_layers_project_file_then_overrides(project, tmp_path):
    cfg_file = tmp_path / "exp.toml"
    cfg_file.write_text("[train]\nmax_steps = 50\nlearning_rate = 5e-4\n[network]\nrank = 8\n")
    cfg = resolve_config(project, cfg_file, ["train.max_steps=7", "sample.prompts=['{trigger} at sea']"])
    assert cfg.train.max_steps == 7  # --set beats the file
    assert cfg.train.learning_rate == 5e-4  # the file beats lorawb.toml (1e-3)
    assert cfg.train.batch_size == 2  # lorawb.toml beats the built-in default (1)
    assert cfg.network.rank == 8
    assert cfg.sample.prompts == ["{trigger} at sea"]
    # Project-derived values are filled in and paths made absolute.
    assert cfg.dataset.trigger == "zkx_mira"
    assert cfg.dataset.resolution == 32
    assert cfg.dataset.path == str((project.root / "dataset").resolve())
    assert cfg.model.path == str((project.root / "models/tiny").resolve())
    assert cfg.save.name == "zkx_mira"


def test_resolved_toml_round_trips(project, tmp_path):
    cfg = resolve_config(project, overrides=["network.ff=true", "train.lr_scheduler=cosine"])
    path = tmp_path / "config.toml"
    path.write_text(cfg.to_toml())
    assert load_run_config(path) == cfg
    assert "# LoRA rank" in cfg.to_toml()  # commented for a person reading it


def test_unknown_key_in_override_is_named(project):
    with pytest.raises(ConfigError) as err:
        resolve_config(project, overrides=["train.max_stepz=5"])
    assert "train.max_stepz" in str(err.value) and "unknown key" in str(err.value)
    assert "max_steps" in (err.value.hint or "")


def test_ill_typed_value_in_file_names_file_line_and_key(project, tmp_path):
    cfg_file = tmp_path / "bad.toml"
    cfg_file.write_text('[train]\nmax_steps = 10\nbatch_size = "two"\n')
    with pytest.raises(ConfigError) as err:
        resolve_config(project, cfg_file)
    e = err.value
    assert e.path == cfg_file and e.line == 3 and "train.batch_size" in e.message


def test_bad_value_in_lorawb_toml_names_it(project):
    text = project.config_path.read_text().replace("batch_size = 2", "batch_size = 0")
    project.config_path.write_text(text)
    with pytest.raises(ConfigError) as err:
        resolve_config(Project.load(project.root))
    assert err.value.path == project.config_path and "train.batch_size" in err.value.message


def test_unknown_section_and_bad_choice(project):
    with pytest.raises(ConfigError, match="optimizer"):
        resolve_config(project, overrides=["train.optimizer=sgd"])
    with pytest.raises(ConfigError, match="dotted key"):
        resolve_config(project, overrides=["rank=4"])
    with pytest.raises(ConfigError, match="both 0"):
        resolve_config(project, overrides=["train.max_steps=0"])


def test_run_config_errors_name_the_file(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text("[network]\nrank = 4\nrnak = 3\n")
    with pytest.raises(ConfigError) as err:
        load_run_config(bad)
    assert err.value.path == bad and err.value.line == 3
    with pytest.raises(ConfigError, match="not found"):
        load_run_config(tmp_path / "nothing")


def test_config_diff_lists_changed_keys():
    a = TrainConfig()
    b = a.with_overrides(["train.learning_rate=3e-4", "network.rank=4"])
    assert config_diff(a, b) == [("network.rank", 16, 4), ("train.learning_rate", 1e-4, 3e-4)]


def test_config_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, lorawb.train.config, lorawb.train.process; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
