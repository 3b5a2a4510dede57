"""Bad input to training: a save name or run label that would write outside the run, a 50 MB caption,
settings no one means (batch_size 10**12, learning_rate inf, max_steps 1e22, nan anywhere), a pickle
where a .safetensors or the resume state belongs, and the temp files of saves a kill interrupted."""

from __future__ import annotations

import io
import json
import math
import pathlib
import pickle

import pytest

from lorawb.core import fsutil
from lorawb.core.project import Project
from lorawb.errors import CaptionError, ConfigError, LorawbError, ModelError, RunError
from lorawb.train.config import TrainConfig, resolve_config
from lorawb.train.process import check_resumable, create_run
from lorawb.train.runfolder import RunFolder, list_runs
from tests.faults.helpers import caption_project


class Payload:
    """A pickle that runs code when loaded: it makes ``marker`` (harmless, and visible)."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def pickle_file(path: pathlib.Path, marker: pathlib.Path, torch_zip: bool = False) -> pathlib.Path:
    """A pickle with code in it at ``path``: plain (protocol 4) or as torch.save writes it (a zip)."""
    if torch_zip:
        import torch

        buf = io.BytesIO()
        torch.save(Payload(marker), buf)
        path.write_bytes(buf.getvalue())
    else:
        path.write_bytes(pickle.dumps(Payload(marker), protocol=4))
    return path


def fake_model(root: pathlib.Path) -> pathlib.Path:
    """A diffusers folder as far as the checks before a run look (no weights: nothing is loaded)."""
    (root / "unet").mkdir(parents=True)
    (root / "model_index.json").write_text("{}")
    return root


def project_on(tmp_path, model: pathlib.Path | str = "") -> Project:
    project = caption_project(tmp_path, n=4, images=True)
    text = project.config_path.read_text()
    assert text.count('\npath = ""\n') == 1  # [model] path
    project.config_path.write_text(text.replace('\npath = ""\n', f'\npath = "{model}"\n'))
    return Project.load(project.root)


# --- item 3: names that become paths --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../../X", "/tmp/X", "a/b", "..", ".hidden"])
def test_save_name_that_leaves_the_checkpoints_folder_is_refused_with_its_key(tmp_path, name):
    project = project_on(tmp_path)
    with pytest.raises(ConfigError) as err:
        resolve_config(project, overrides=[f"save.name={name}"])
    assert err.value.message.startswith("--set save.name: ") and "checkpoint" in err.value.message
    config = tmp_path / "run.toml"
    config.write_text(f'[train]\nmax_steps = 10\n\n[save]\nname = "{name}"\n')
    with pytest.raises(ConfigError) as err:
        resolve_config(project, config)
    assert err.value.message.startswith("save.name: ") and (err.value.path, err.value.line) == (config, 5)


def test_the_default_save_name_and_a_plain_one_still_work(tmp_path):
    project = project_on(tmp_path)
    assert resolve_config(project).save.name == "zkx_mira"  # the trigger's slug
    assert resolve_config(project, overrides=["save.name=mira v2.final"]).save.name == "mira v2.final"


@pytest.mark.parametrize("label", ["../../x", "/tmp/x", "a/b"])
def test_a_run_label_that_is_a_path_is_refused_naming_the_option(tmp_path, label):
    project = project_on(tmp_path, fake_model(tmp_path / "model"))
    config = resolve_config(project)
    with pytest.raises(ConfigError, match="^--name = "):
        create_run(project, config, label)
    assert list_runs(project.runs_dir) == [] and not (tmp_path / "x").exists()
    run = create_run(project, config, "mira v2")  # a label with a space: still one folder in runs/
    assert run.path.parent == project.runs_dir and run.id.endswith("-mira-v2")


# --- item 8: a caption over the limit -------------------------------------------------------------------


def test_the_trainer_refuses_a_50_mb_caption_naming_it_without_reading_it(tmp_path, monkeypatch):
    from lorawb.train import data as D

    project = project_on(tmp_path)
    big = project.dataset_dir / "10_zkx_mira" / "img_001.txt"
    with open(big, "r+b") as fh:
        fh.truncate(50 * 1024 * 1024)  # 50 MB (sparse: the test writes nothing)
    read: list[int] = []
    real = fsutil.os.read
    monkeypatch.setattr(fsutil.os, "read", lambda fd, n: (read.append(n), real(fd, n))[1])
    with pytest.raises(CaptionError, match="the caption is 50.0 MB, over the 64 KB a caption may hold") as err:
        D.load_dataset(resolve_config(project).dataset, 0)
    assert err.value.path == big
    assert sum(read) < 1024 * 1024  # the other captions only: never the 50 MB


# --- item 10: values no one means ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "section, line, key",
    [
        ("train", "batch_size = 1000000000000", "train.batch_size"),
        ("train", "learning_rate = inf", "train.learning_rate"),
        ("train", "max_steps = 1e22", "train.max_steps"),
        ("train", "max_steps = nan", "train.max_steps"),
        ("train", "seed = -1", "train.seed"),
        ("network", "alpha = nan", "network.alpha"),
        ("sample", "cfg = inf", "sample.cfg"),
        ("sample", "seeds = [0, 1e30]", "sample.seeds"),
        ("flux", "shift = inf", "flux.shift"),
        ("flux", "logit_mean = -inf", "flux.logit_mean"),
    ],
)
def test_settings_no_one_means_are_refused_with_key_and_line(tmp_path, section, line, key):
    project = project_on(tmp_path)
    config = tmp_path / "run.toml"
    config.write_text(f"# a run\n\n[{section}]\n{line}\n")
    with pytest.raises(ConfigError) as err:
        resolve_config(project, config)
    assert err.value.message.startswith(f"{key}: ") and (err.value.path, err.value.line) == (config, 4)
    with pytest.raises(ConfigError, match=f"^--set {key}: "):
        resolve_config(project, overrides=[f"{key}={line.split(' = ')[1]}"])


def number_fields(model: type, prefix: str = "") -> list[tuple[str, type]]:
    """Every float/int setting of the schema (family sections included), by dotted key."""
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields"):
            out += number_fields(ann, f"{prefix}{name}.")
        elif ann in (float, int) or "float" in str(ann):
            out.append((f"{prefix}{name}", ann))
    return out


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_no_number_setting_takes_inf_or_nan(value):
    """A guard over the whole schema: a family section added later is covered too."""
    fields = number_fields(TrainConfig)
    assert len(fields) > 30
    accepted = []
    for key, _ in fields:
        section, name = key.split(".", 1)
        try:
            TrainConfig.model_validate({section: {name: value}})
        except Exception:  # noqa: BLE001 - refused, which is the point
            continue
        accepted.append(key)
    assert accepted == []


# --- item 11: pickles where safetensors belong, and killed saves --------------------------------------------


def test_a_pickle_named_safetensors_as_the_base_model_is_refused_and_never_run(tmp_path):
    from lorawb import families
    from lorawb.train.config import ModelSection
    from lorawb.train.modelpath import check_model_path

    marker = tmp_path / "ran"
    single = pickle_file(tmp_path / "model.safetensors", marker)
    folder = fake_model(tmp_path / "folder")
    pickle_file(folder / "unet" / "diffusion_pytorch_model.safetensors", marker, torch_zip=True)
    for path in (single, folder):
        with pytest.raises(ModelError, match="model.path: this is a pickle") as err:
            check_model_path(ModelSection(path=str(path)))
        assert err.value.path in (single, folder / "unet" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ModelError, match="this is a pickle") as err:
        families.detect(single)  # what loading a single file asks first
    project = project_on(tmp_path / "p", single)
    with pytest.raises(ModelError):
        create_run(project, resolve_config(project))
    assert list_runs(project.runs_dir) == [] and not marker.exists()


def test_a_pickle_as_the_lora_to_start_from_or_a_checkpoint_is_refused_naming_it(tmp_path):
    from lorawb.matrix.lorafile import read_lora

    marker = tmp_path / "ran"
    evil = pickle_file(tmp_path / "mira.safetensors", marker)
    project = project_on(tmp_path / "p", fake_model(tmp_path / "model"))
    config = resolve_config(project, overrides=[f"network.init_from={evil}"])
    with pytest.raises(ModelError, match="network.init_from: this is a pickle") as err:
        create_run(project, config)
    assert err.value.path == evil and list_runs(project.runs_dir) == []
    with pytest.raises(ModelError, match="this is a pickle") as err:
        read_lora(evil)  # a checkpoint or LoRA named in a matrix
    assert err.value.path == evil and not marker.exists()


def stopped_run(tmp_path) -> RunFolder:
    run = RunFolder(tmp_path / "runs" / "20261125-100000-a").create()
    run.config.write_text(f'[model]\npath = "{fake_model(tmp_path / "model")}"\n')
    run.events.write_text(json.dumps({"type": "status", "state": "stopped", "step": 10}) + "\n")
    return run


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's, about the test's pickle
@pytest.mark.parametrize("torch_zip", [False, True], ids=["pickle", "torch-zip-pickle"])
def test_a_pickle_resume_state_is_refused_naming_it_and_never_run(tmp_path, torch_zip):
    from lorawb.train.trainer import read_resume_payload

    marker = tmp_path / "ran"
    run = stopped_run(tmp_path)
    resume = pickle_file(run.state / "resume.pt", marker, torch_zip=torch_zip)
    if not torch_zip:  # a quick look before launching (a zip passes it: the trainer's read refuses it)
        with pytest.raises(RunError, match="not a resume state lorawb wrote") as err:
            check_resumable(run)
        assert err.value.path == resume
    with pytest.raises(RunError, match="cannot read the resume state") as err:
        read_resume_payload(resume)
    assert err.value.path == resume and not marker.exists()


def test_temp_files_of_killed_saves_are_swept_when_the_run_starts_again(tmp_path):
    from lorawb.train.trainer import train

    run = stopped_run(tmp_path)
    (run.config).write_text(f'[model]\npath = "{tmp_path / "gone"}"\n')  # it fails right after the sweep
    keep = [run.checkpoints / "a-000010.safetensors", run.state / "resume.pt", run.samples / "000010-0.png"]
    for p in keep:
        p.write_bytes(b"kept")
    leftovers = [
        run.checkpoints / ".lwb-0badf00d-3.tmp",  # a checkpoint save killed mid-write
        run.state / ".lwb-0badf00d-4.tmp",  # the resume state's
        run.samples / ".lwb-0badf00d-5.tmp",
        run.checkpoints / ".a-000020.safetensors.k2j4h1.tmp",  # an older lorawb's temp name
    ]
    for p in leftovers:
        p.write_bytes(b"half")
    with pytest.raises(LorawbError, match="base model not found"):
        train(run, resume=True)
    assert [p for p in leftovers if p.exists()] == [] and all(p.read_bytes() == b"kept" for p in keep)
    assert "removed 4 temp file(s) of interrupted saves" in run.log.read_text()
