"""The sample project: one toy-world character, its dataset, inbox candidates and lorawb.toml.

The character ``zkx_mira`` has blue hair, an orange outfit and a scarf: a combination the
toy base model never saw in pretraining (``pretrain`` leaves every blue-haired figure in an
orange outfit out), so a LoRA that brings it back from the trigger alone has learned it.
Captions start with the trigger and name only what varies (context, style, pose); the
invariant look is left to the trigger (the caption strategy in docs/captions.md).

``make_sample_project(root)`` rewrites the images and captions deterministically; the
committed copy under ``sample_project/`` is its output.
"""

from __future__ import annotations

from pathlib import Path

import tomlkit

from lorawb.core.config import default_toml
from lorawb.core.fsutil import atomic_write_text
from lorawb.toyworld import world

TRIGGER = "zkx_mira"
CHARACTER = {"hair": "blue", "outfit": "orange", "accessory": "scarf"}
# What the LoRA must bring from the trigger alone; the character's prompt for the reader.
CHARACTER_PROMPT = "blue hair, orange outfit, scarf"
MODEL_DIR = "models/toyworld-sd"
FOLDER = f"10_{TRIGGER}"
PREVIEW_SIZE = 128  # images are stored at 4x for nicer previews; the trainer shrinks them to 32
# Pretraining never shows these combinations (see pretrain.EXCLUDE).
NEVER_IN_PRETRAINING = ({"hair": "blue", "outfit": "orange"},)

# The second character, and the two together (several characters in one project: docs/toyworld.md).
TOM_TRIGGER = "qvr_tom"
TOM = {"hair": "blonde", "outfit": "green", "accessory": "hat"}
TOM_PROMPT = "blonde hair, green outfit, hat"
TOM_FOLDER = f"10_{TOM_TRIGGER}"
JOINT_FOLDER = f"5_{TRIGGER}+{TOM_TRIGGER}"
PAIR_TEMPLATE = "{a}, {b}, {context}"  # tag-style, both triggers leading; the first-named stands on the left
JOINT_CONTEXTS = ("forest", "bar")  # the pair is never shown in the others: `lorawb matrix new --pairs` finds them
JOINT_RESOLUTION = 46  # a 64x32 joint scene is bucketed whole (46 * 46 >= 64 * 32), each figure 32 px tall
INVARIANT_GROUPS = ("hair", "outfit", "accessory")  # left to the triggers, never in the captions


def dataset_specs() -> list[world.Spec]:
    """32 images: every context x style, twice, the poses cycling, the scene details seeded."""
    specs = []
    i = 0
    for context in world.CONTEXTS:
        for style in world.STYLES:
            for _ in range(2):
                specs.append(
                    world.Spec(
                        **CHARACTER,
                        context=context,
                        style=style,
                        pose=world.POSES[i % len(world.POSES)],
                        seed=7000 + i,
                    )
                )
                i += 1
    return specs


def inbox_specs() -> list[tuple[str, world.Spec, int, str]]:
    """Triage candidates: (file stem, spec, pixel size, why it is there). Some fit, some are off-model."""
    mira = world.Spec(**CHARACTER, context="beach", style="outlined", pose="arms up", seed=9001)
    return [
        ("cand_01", mira, PREVIEW_SIZE, "on-model"),
        ("cand_02", world.with_(mira, context="bar", style="dithered", pose="waving"), PREVIEW_SIZE, "on-model"),
        ("cand_03", world.with_(mira, hair="red", context="forest"), PREVIEW_SIZE, "off-model: red hair"),
        ("cand_04", world.with_(mira, accessory="none", context="spaceship"), PREVIEW_SIZE, "off-model: no scarf"),
        ("cand_05", world.with_(mira, outfit="green", context="bar", style="flat"), PREVIEW_SIZE, "off-model: outfit"),
        ("cand_06", world.with_(mira, context="forest", style="flat", pose="standing"), 32, "low resolution"),
        # the same drawing as the first dataset image: a duplicate for triage to find
        ("cand_07", dataset_specs()[0], PREVIEW_SIZE, "duplicate of the dataset's first image"),
    ]


def dataset_caption(spec: world.Spec) -> str:
    return world.caption(spec, trigger=TRIGGER, omit=("hair", "outfit", "accessory"))


def tom_specs() -> list[world.Spec]:
    """8 images of the second character: every context in two styles, the poses cycling."""
    specs = []
    for i, context in enumerate(world.CONTEXTS):
        for k, style in enumerate((world.STYLES[i % 4], world.STYLES[(i + 2) % 4])):
            n = 2 * i + k
            specs.append(world.Spec(**TOM, context=context, style=style, pose=world.POSES[n % 3], seed=8000 + n))
    return specs


def tom_caption(spec: world.Spec) -> str:
    return world.caption(spec, trigger=TOM_TRIGGER, omit=INVARIANT_GROUPS)


def joint_specs() -> list[tuple[world.Spec, world.Spec]]:
    """4 joint scenes, mira on the left and tom on the right, in two contexts only (the gaps to fill)."""
    out = []
    for i, context in enumerate(JOINT_CONTEXTS):
        for k, style in enumerate(("flat", "watercolor")):
            n = 2 * i + k
            mira = world.Spec(**CHARACTER, context=context, style=style, pose=world.POSES[n % 3], seed=8500 + n)
            tom = world.Spec(**TOM, context=context, style=style, pose=world.POSES[(n + 1) % 3], seed=8600 + n)
            out.append((mira, tom))
    return out


def joint_caption(left: world.Spec, right: world.Spec) -> str:
    """``zkx_mira, qvr_tom, forest, flat``: both triggers lead, then what varies."""
    omit = (*INVARIANT_GROUPS, "pose")
    return world.pair_caption(left, right, triggers=(TRIGGER, TOM_TRIGGER), omit=omit, template=PAIR_TEMPLATE)


def write_second_character(root: str | Path, *, joint: bool = True) -> None:
    """Write the second character's folder (and the joint folder) under ``root/dataset``."""
    ds = Path(root) / "dataset"
    for i, spec in enumerate(tom_specs(), 1):
        world.write_image(ds / TOM_FOLDER / f"tom_{i:02d}_{spec.context}.png", spec, tom_caption(spec), PREVIEW_SIZE)
    if joint:
        for i, (a, b) in enumerate(joint_specs(), 1):
            world.write_pair_image(
                ds / JOINT_FOLDER / f"pair_{i:02d}_{a.context}.png", a, b, joint_caption(a, b), PREVIEW_SIZE
            )


def sample_toml(name: str = "sample_project", two_characters: bool = False) -> str:
    """lorawb.toml for the sample: the default template with the toy model's settings filled in
    (``two_characters``: with ``[characters]`` for mira and tom, trained jointly)."""
    doc = tomlkit.parse(default_toml(name, TRIGGER, groups="", prompts="[]"))
    proj = doc["project"]
    proj["resolution"] = 32
    proj["resolution"].comment("the toy base model draws 32x32 images")
    proj["min_resolution"] = 64
    proj["min_resolution"].comment("the dataset is stored at 128x128; a 32 px image in the inbox gets flagged")
    groups = doc["tags"]["groups"]
    groups["context"] = list(world.CONTEXTS)
    groups["style"] = list(world.STYLES)
    groups["pose"] = list(world.POSES)
    tagger = doc["tagger"]
    tagger["model"] = "toyworld"
    tagger["model"].comment("the toy world's attribute reader tags toy-world images honestly on a CPU")
    tagger["invariant"] = CHARACTER_PROMPT.split(", ")
    doc["model"]["path"] = MODEL_DIR
    doc["model"]["path"].comment("the toy-world base model (see its README.md); built by `lorawb toyworld pretrain`")
    dataset = tomlkit.table()
    dataset["bucket_step"] = 8
    dataset["bucket_step"].comment("bucket sides are multiples of 8 for a 32 px model")
    doc.add("dataset", dataset)
    network = tomlkit.table()
    network["rank"] = 8
    network["alpha"] = 8.0
    doc.add("network", network)
    train = doc["train"]
    train["max_steps"] = 200
    train["max_steps"].comment("about a minute on 2 CPU cores")
    train["batch_size"] = 4
    train["learning_rate"] = 5e-4
    train["learning_rate"].comment("a tiny model learns a character in a few hundred steps at a high rate")
    sample = doc["sample"]
    sample["every_n_steps"] = 50
    at_start = tomlkit.item(True)
    at_start.comment("the base model's drawings first, to watch the character emerge")
    sample["at_start"] = at_start
    sample["prompts"] = [f"{{trigger}}, {c}" for c in world.CONTEXTS] + ["red hair, green outfit, beach"]
    sample["cfg"] = 1.5
    sample["cfg"].comment("a tiny model wants a low guidance scale")
    doc["save"]["every_n_steps"] = 50
    sheet = tomlkit.table()
    sheet.add(tomlkit.comment("The character sheet: `lorawb generate` (G in Triage) draws the character over the"))
    sheet.add(
        tomlkit.comment("contexts and styles of [tags.groups] into inbox/, to keep or reject before a LoRA exists.")
    )
    sheet["description"] = CHARACTER_PROMPT
    sheet["description"].comment("stands for the character in the prompts until a LoRA exists")
    sheet["poses"] = []
    sheet["poses"].comment("no pose axis here ([tags.groups] pose would multiply the grid by 3)")
    sheet["count"] = 2
    sheet["count"].comment("images per context x style: 32 candidates, a minute or two on a CPU")
    doc.add("generate", sheet)
    matrix = tomlkit.table()
    matrix["target_minutes"] = 1
    matrix["target_minutes"].comment("the tour's matrix: about a minute on 2 CPU cores; 0 makes the full one")
    doc.add("matrix", matrix)
    if two_characters:
        _add_characters(doc)
    return _reorder(tomlkit.dumps(doc))


def _add_characters(doc: tomlkit.TOMLDocument) -> None:
    """mira and tom in one project, trained jointly (docs/toyworld.md)."""
    dataset = doc["dataset"]
    dataset["joint_resolution"] = JOINT_RESOLUTION
    dataset["joint_resolution"].comment("a 64x32 joint scene is bucketed whole: each figure stays 32 px tall")
    train = doc["train"]
    train["max_steps"] = 400
    train["max_steps"].comment("two characters and the pair share the steps")
    doc["sample"]["prompts"] = ["{trigger}, forest", "{trigger}, bar", "red hair, green outfit, beach"]
    doc["sample"]["prompts"].comment("each {trigger} prompt is drawn for mira, for tom and for the pair")
    chars = tomlkit.table(is_super_table=False)
    chars.add(
        tomlkit.comment("Several characters in one project: one LoRA learns both (docs/matrix.md, docs/toyworld.md).")
    )
    chars["balance"] = "equal"
    chars["balance"].comment("mira, tom and the pair get the same images per epoch")
    chars["pair_template"] = PAIR_TEMPLATE
    chars["pair_template"].comment("as the joint captions read: the first-named stands on the left")
    for cname, trigger, look, folder in (
        ("mira", TRIGGER, CHARACTER_PROMPT, FOLDER),
        ("tom", TOM_TRIGGER, TOM_PROMPT, TOM_FOLDER),
    ):
        t = tomlkit.table()
        t["trigger"] = trigger
        t["invariant"] = look.split(", ")
        t["folders"] = [folder]
        chars.add(cname, t)
    doc.add("characters", chars)


def _reorder(text: str) -> str:
    """Put the sections appended at the end ([dataset], [network]) after [model], where a reader looks."""
    doc = tomlkit.parse(text)
    order = ["project", "tags", "triage", "ui", "tagger", "model", "dataset", "network", "train", "sample", "save"]
    order += ["matrix"]
    out = tomlkit.document()
    for key in order + [k for k in doc if k not in order]:
        if key in doc:
            out.add(key, doc[key])
    body = tomlkit.dumps(out)
    # the template's top comment is attached to the document, not to a table
    head = text.split("[project]")[0]
    return head + body.lstrip()


def committed_model_dir() -> Path:
    """The toy base model committed under the repository's sample_project/ (the generator does not make it)."""
    return Path(__file__).resolve().parents[2] / "sample_project" / MODEL_DIR


def make_sample_project(
    root: str | Path, *, write_toml: bool = False, name: str = "", two_characters: bool = False
) -> Path:
    """Write the sample dataset and inbox under ``root`` (and lorawb.toml when asked or missing).

    ``name`` is the project name in lorawb.toml (default: the folder's name). ``two_characters``
    adds the second character's folder, the joint folder and ``[characters]`` (the committed
    sample_project/ has one character).
    """
    root = Path(root)
    folder = root / "dataset" / FOLDER
    for i, spec in enumerate(dataset_specs(), 1):
        world.write_image(folder / f"mira_{i:02d}_{spec.context}.png", spec, dataset_caption(spec), PREVIEW_SIZE)
    for stem, spec, size, _why in inbox_specs():
        world.write_image(root / "inbox" / f"{stem}.png", spec, dataset_caption(spec), size)
    if two_characters:
        write_second_character(root)
    cfg = root / "lorawb.toml"
    if write_toml or not cfg.exists():
        atomic_write_text(cfg, sample_toml(name or root.name or "sample_project", two_characters))
    return root


def reset_sample_project(root: str | Path, *, everything: bool = False) -> list[Path]:
    """Put a sample project back as the generator makes it; returns what was removed first.

    dataset/, inbox/, lorawb.toml and the app's state (.lorawb/: triage marks, caption history)
    are rewritten; runs/ and matrices/ stay unless ``everything``. The model under models/ is
    never touched (it is committed, not generated).
    """
    import shutil

    root = Path(root)
    if not (root / MODEL_DIR).exists() and not (root / "lorawb.toml").exists():
        raise FileNotFoundError(f"{root} does not look like the sample project (no lorawb.toml, no {MODEL_DIR})")
    names = ["dataset", "inbox", ".lorawb", "lorawb.toml"] + (["runs", "matrices"] if everything else [])
    removed = []
    for name in names:
        p = root / name
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p)
        else:
            continue
        removed.append(p)
    make_sample_project(root, write_toml=True, name="sample_project")
    return removed
