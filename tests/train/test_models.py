"""Base-model loading: diffusers folders, single .safetensors files (configs from a local folder), families."""

from __future__ import annotations

import pytest
import torch

from lorawb.errors import ModelError
from lorawb.families import load_base_model
from lorawb.toyworld.tiny import write_single_file
from lorawb.train.config import ModelSection
from lorawb.train.modelpath import detect_family


@pytest.fixture(scope="module")
def single_file(tiny_sd1, tmp_path_factory):
    return write_single_file(tiny_sd1, tmp_path_factory.mktemp("ckpt") / "tiny-sd1.safetensors")


def test_family_detection(tiny_sd1, tiny_sdxl, single_file):
    assert detect_family(tiny_sd1) == "sd1" and detect_family(tiny_sdxl) == "sdxl"
    assert detect_family(single_file) == "sd1"
    assert detect_family(tiny_sd1, "sd2") == "sd2"  # forced


def test_single_file_loads_the_same_weights_as_the_folder(tiny_sd1, single_file):
    cpu = torch.device("cpu")
    a = load_base_model(ModelSection(path=str(single_file), config=str(tiny_sd1)), cpu)
    b = load_base_model(ModelSection(path=str(tiny_sd1)), cpu)
    assert a.family == "sd1" and a.prediction_type == "epsilon"
    for x, y in ((a.unet, b.unet), (a.vae, b.vae), (a.text_encoders[0], b.text_encoders[0])):
        sa, sb = x.state_dict(), y.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sb)
    ids = a.tokenize(["zkx_mira, forest"])
    assert torch.equal(ids[0], b.tokenize(["zkx_mira, forest"])[0])


def test_single_file_without_configs_says_which_folder_to_point_at(single_file):
    with pytest.raises(ModelError) as err:
        load_base_model(ModelSection(path=str(single_file)), torch.device("cpu"))
    assert err.value.path == single_file and "model.config" in (err.value.hint or "")


def test_prediction_type_override(tiny_sd1):
    m = load_base_model(ModelSection(path=str(tiny_sd1), prediction_type="v_prediction"), torch.device("cpu"))
    assert m.prediction_type == "v_prediction" and m.scheduler_config["prediction_type"] == "v_prediction"
