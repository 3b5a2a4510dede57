"""Variation helpers with tiny models saved in their real formats, loaded through the code a real
folder takes: an IP-Adapter on refs/, an OpenPose ControlNet on lorawb's skeletons (SD1), and for
Flux.1 a ControlNet, an XLabs-style IP-Adapter and Kontext reference editing. Mechanics only: the
toy world does not pretend they improve anything."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

from lorawb.core.project import Project
from lorawb.errors import ModelError
from lorawb.generate import job
from lorawb.toyworld.tiny_helpers import build_tiny_controlnet, build_tiny_ip_adapter
from tests.generate.conftest import add_sheet


@pytest.fixture(scope="module")
def helpers(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("helpers")
    return build_tiny_ip_adapter(root / "ip-adapter", tiny_model), build_tiny_controlnet(root / "cn", tiny_model)


def test_the_tiny_helpers_are_in_the_files_real_ones_ship_as(helpers):
    adapter, controlnet = helpers
    with safe_open(str(adapter), framework="pt") as f:
        keys = set(f.keys())
    assert {"image_proj.proj.weight", "image_proj.norm.weight", "ip_adapter.1.to_k_ip.weight"} <= keys
    assert all(k.startswith(("image_proj.", "ip_adapter.")) for k in keys)
    assert {p.name for p in (adapter.parent / "image_encoder").iterdir()} >= {"config.json", "model.safetensors"}
    assert {p.name for p in controlnet.iterdir()} >= {"config.json", "diffusion_pytorch_model.safetensors"}


def _project(tmp_path, tiny_model, extra: str) -> Project:
    from tests.train.conftest import make_project

    root = add_sheet(make_project(tmp_path / "p", tiny_model, n_images=2), extra)
    (root / "refs").mkdir()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(root / "refs" / "red.png")
    Image.new("RGB", (32, 32), (40, 40, 200)).save(root / "refs" / "blue.png")
    return Project.load(root)


def test_ip_adapter_draws_from_the_references(helpers, tmp_path, tiny_model):
    adapter, _ = helpers
    project = _project(tmp_path, tiny_model, f'with = "ip-adapter"\nip_adapter = "{adapter}"\ncontexts = ["forest"]\n')
    plan = job.plan_generate(project)
    assert plan.helper["kind"] == "ip-adapter" and plan.helper["encoder"].endswith("image_encoder")
    assert {c["reference"] for c in plan.candidates} <= {"refs/red.png", "refs/blue.png"}
    assert job.start_generate(project, plan, detach=False) == "finished"
    rec = job.find_record(project, plan.candidates[0]["id"])
    assert rec["helper"] == {
        "kind": "ip-adapter",
        "path": str(adapter),
        "encoder": str(adapter.parent / "image_encoder"),
        "scale": 0.6,
    }
    assert rec["reference"] in ("refs/red.png", "refs/blue.png")
    with Image.open(project.root / rec["file"]) as im:
        before = im.convert("RGB").tobytes()
    assert job.regenerate(project, rec["id"]).tobytes() == before  # the helper and reference come back too
    # the same candidate without the adapter is another image
    plain = job.plan_generate(project, job.GenerateOptions(helper="none"))
    same = next(c for c in plain.candidates if c["seed"] == rec["params"]["seed"])
    assert same["id"] != rec["id"]


def test_controlnet_draws_lorawbs_pose_skeletons(helpers, tmp_path, tiny_model):
    _, controlnet = helpers
    extra = f'with = "controlnet"\ncontrolnet = "{controlnet}"\ncontexts = ["forest"]\nstyles = []\nposes = ["standing", "arms up"]\n'
    project = _project(tmp_path, tiny_model, extra)
    plan = job.plan_generate(project)
    assert [c["pose"] for c in plan.candidates] == ["standing", "arms up"]
    assert [c["caption"] for c in plan.candidates] == ["zkx_mira, forest, standing", "zkx_mira, forest, arms up"]
    assert job.start_generate(project, plan, detach=False) == "finished"
    skeletons = sorted(p.name for p in job.GenerateJob.of(project).poses_dir.iterdir())
    assert skeletons == ["arms_up-32x32.png", "standing-32x32.png"]
    rec = job.find_record(project, plan.candidates[1]["id"])
    assert rec["pose"] == "arms up" and rec["helper"]["kind"] == "controlnet"
    with Image.open(project.root / rec["file"]) as im:
        before = np.asarray(im.convert("RGB"))
    # the pose steers the image: the same prompt and seed in the other pose differ
    from lorawb.matrix.generate import Generator
    from lorawb.matrix.requests import ImageRequest
    from lorawb.train.config import ModelSection

    gen = Generator.load(ModelSection(**plan.model))
    gen.use_helper(plan.helper_spec())
    r = plan.request(plan.candidates[1])
    other = ImageRequest(**{**r.__dict__, "helper_input": str(job.pose_image(plan, "standing"))})
    assert np.asarray(gen.run_batch([r])[0]).tobytes() == before.tobytes()
    assert np.abs(np.asarray(gen.run_batch([other])[0], dtype=int) - before).max() > 0


def test_a_helper_the_family_lacks_is_refused_before_anything_loads(tmp_path, tiny_model):
    project = _project(tmp_path, tiny_model, f'edit_model = "{tiny_model}"\n')
    with pytest.raises(
        ModelError, match=r"reference editing is not available for SD 1.x in lorawb \(it has: ip-adapter, controlnet\)"
    ):
        job.plan_generate(project, job.GenerateOptions(helper="edit"))
    with pytest.raises(Exception, match="generate.controlnet: --with needs an OpenPose ControlNet folder"):
        job.plan_generate(project, job.GenerateOptions(helper="controlnet"))


@pytest.mark.slow
def test_flux_has_controlnet_ip_adapter_and_kontext_editing(tmp_path, tiny_flux):
    from lorawb.families import Helper
    from lorawb.generate import poses
    from lorawb.matrix.generate import Generator
    from lorawb.matrix.requests import ImageRequest
    from lorawb.train.config import ModelSection

    adapter = build_tiny_ip_adapter(tmp_path / "ip", tiny_flux)
    with safe_open(str(adapter), framework="pt") as f:
        assert "double_blocks.0.processor.ip_adapter_double_stream_k_proj.weight" in set(f.keys())
    net = build_tiny_controlnet(tmp_path / "cn", tiny_flux)
    size = 16
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    poses.draw("waving", size, size).save(a)
    Image.new("RGB", (size, size), (30, 30, 200)).save(b)
    kinds = {
        "controlnet": ("FluxControlNetPipeline", Helper("controlnet", str(net), scale=1.0)),
        "ip-adapter": ("FluxPipeline", Helper("ip-adapter", str(adapter), str(adapter.parent / "image_encoder"), 1.0)),
        "edit": ("FluxKontextPipeline", Helper("edit")),
    }
    for kind, (pipeline, helper) in kinds.items():
        gen = Generator.load(ModelSection(path=str(tiny_flux)))
        gen.use_helper(helper)
        assert type(gen.pipe).__name__ == pipeline
        r = ImageRequest(
            "a", 1, width=size, height=size, steps=2, cfg=3.5, sampler="euler", helper=kind, helper_input=str(a)
        )
        one, two = gen.run_batch([r])[0], gen.run_batch([ImageRequest(**{**r.__dict__, "helper_input": str(b)})])[0]
        assert one.size == (size, size)
        assert np.abs(np.asarray(one, dtype=int) - np.asarray(two, dtype=int)).max() > 0, kind


@pytest.mark.slow
def test_sdxl_has_ip_adapter_and_controlnet(tmp_path, tiny_sdxl):
    from lorawb.families import Helper
    from lorawb.generate import poses
    from lorawb.matrix.generate import Generator
    from lorawb.matrix.requests import ImageRequest
    from lorawb.train.config import ModelSection

    adapter = build_tiny_ip_adapter(tmp_path / "ip", tiny_sdxl)
    net = build_tiny_controlnet(tmp_path / "cn", tiny_sdxl)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    poses.draw("waving", 32, 32).save(a)
    poses.draw("arms up", 32, 32).save(b)
    kinds = {
        "controlnet": ("StableDiffusionXLControlNetPipeline", Helper("controlnet", str(net), scale=1.0)),
        "ip-adapter": (
            "StableDiffusionXLPipeline",
            Helper("ip-adapter", str(adapter), str(adapter.parent / "image_encoder"), 1.0),
        ),
    }
    for kind, (pipeline, helper) in kinds.items():
        gen = Generator.load(ModelSection(path=str(tiny_sdxl)))
        gen.use_helper(helper)
        assert type(gen.pipe).__name__ == pipeline
        r = ImageRequest("a", 1, width=32, height=32, steps=2, cfg=1.5, helper=kind, helper_input=str(a))
        one, two = gen.run_batch([r])[0], gen.run_batch([ImageRequest(**{**r.__dict__, "helper_input": str(b)})])[0]
        assert np.abs(np.asarray(one, dtype=int) - np.asarray(two, dtype=int)).max() > 0, kind


@pytest.mark.slow
def test_flux2_klein_edits_from_a_reference_and_zimage_has_no_helper(tmp_path, tiny_flux2_klein):
    from lorawb import families
    from lorawb.families import Helper
    from lorawb.matrix.generate import Generator
    from lorawb.matrix.requests import ImageRequest
    from lorawb.train.config import ModelSection

    gen = Generator.load(ModelSection(path=str(tiny_flux2_klein)))
    gen.use_helper(Helper("edit"))
    a, b, small = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "small.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(a)
    Image.new("RGB", (64, 64), (30, 30, 200)).save(b)
    Image.new("RGB", (32, 32), (30, 30, 200)).save(small)
    r = ImageRequest("a", 1, width=16, height=16, steps=2, cfg=4.0, sampler="euler", helper="edit", helper_input=str(a))
    one, two = gen.run_batch([r])[0], gen.run_batch([ImageRequest(**{**r.__dict__, "helper_input": str(b)})])[0]
    assert np.abs(np.asarray(one, dtype=int) - np.asarray(two, dtype=int)).max() > 0  # the reference is read
    with pytest.raises(ModelError, match="too small for Flux.2 Klein"):
        gen.run_batch([ImageRequest(**{**r.__dict__, "helper_input": str(small)})])
    with pytest.raises(ModelError, match="ControlNet is not available for Flux.2 Klein"):
        gen.use_helper(Helper("controlnet", "x"))
    assert families.get("zimage").helpers == ()
