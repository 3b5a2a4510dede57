"""Byte-exact undo, and edits that keep how a caption file was stored (BOM, encoding, newlines, lines)."""

from __future__ import annotations

import pytest

from lorawb.core import caption_history as ch
from lorawb.core import caption_ops as co
from lorawb.core.project import Project, init_project
from tests.core.captions_data import PNG

# name: (bytes on disk, what the file must be after adding "hat" at the end)
CASES = {
    "bom": (b"\xef\xbb\xbfzkx_mira, red scarf\n", b"\xef\xbb\xbfzkx_mira, red scarf, hat\n"),
    "cp1252": ("zkx_mira, café, “quoted”\n".encode("cp1252"), "zkx_mira, café, “quoted”, hat\n".encode("cp1252")),
    # 0x81 is not cp1252: read as latin-1, kept latin-1
    "latin1": (b"zkx_mira, caf\xe9\x81\n", b"zkx_mira, caf\xe9\x81, hat\n"),
    "utf16le": ("zkx_mira, snow\r\n".encode("utf-16"), "zkx_mira, snow, hat\r\n".encode("utf-16")),
    "utf16be": (
        b"\xfe\xff" + "zkx_mira, snow".encode("utf-16-be"),
        b"\xfe\xff" + "zkx_mira, snow, hat".encode("utf-16-be"),
    ),
    "crlf": (b"zkx_mira, rain\r\n", b"zkx_mira, rain, hat\r\n"),
    "lone_cr": (b"zkx_mira, rain\r", b"zkx_mira, rain, hat\r"),
    # two lines (kohya wildcards: one caption per line): each line edited as a caption, the lines stay
    "two_lines": (
        b"zkx_mira, forest\nzkx_mira, beach, photo\n",
        b"zkx_mira, forest, hat\nzkx_mira, beach, photo, hat\n",
    ),
    "two_lines_crlf_bom": (
        b"\xef\xbb\xbfzkx_mira, forest\r\nnote: keep this line\r\n",
        b"\xef\xbb\xbfzkx_mira, forest, hat\r\nnote: keep this line, hat\r\n",
    ),
}
# Not representable as they were (undo must still give these exact bytes back).
ODD = {
    "mixed_newlines": b"zkx_mira, a\r\nzkx_mira, b\nzkx_mira, c\r",
    "bad_utf8_after_bom": b"\xef\xbb\xbfzkx_mira, \xe2\x82 broken",
    "odd_utf16": b"\xff\xfez\x00k\x00x\x00\x00",
}


def make(root, files: dict[str, bytes]) -> Project:
    project = init_project(root, trigger="zkx_mira")
    folder = project.dataset_dir / "10_zkx_mira"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / f"{name}.png").write_bytes(PNG)
        (folder / f"{name}.txt").write_bytes(data)
    return Project.load(root)


def on_disk(project: Project) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted((project.dataset_dir / "10_zkx_mira").glob("*.txt"))}


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_edit_keeps_encoding_bom_newlines_and_lines_and_undo_gives_the_exact_bytes(tmp_path, name):
    before, expected = CASES[name]
    project = make(tmp_path / "p", {name: before})
    cs = co.build_changeset(project, co.AddTag("hat"))
    assert len(cs) == 1 and not cs.lossy
    res = ch.apply_changeset(project, cs)
    assert res.written and not res.conflicts
    assert on_disk(project)[name] == expected
    [undone] = ch.undo(project)
    assert undone.written and on_disk(project)[name] == before  # byte for byte
    [redone] = ch.redo(project)
    assert redone.written and on_disk(project)[name] == expected


def test_undo_is_byte_exact_for_files_whose_text_cannot_say_how_they_were_stored(tmp_path):
    project = make(tmp_path / "p", ODD)
    cs = co.build_changeset(project, co.AddTag("hat"))
    assert len(cs) == len(ODD)
    ch.apply_changeset(project, cs)
    assert all(on_disk(project)[k] != v for k, v in ODD.items())
    ch.undo(project)
    assert on_disk(project) == ODD


def test_a_hand_edit_of_line_one_keeps_line_two(tmp_path):
    before = b"zkx_mira, forest\r\nzkx_mira, alt caption\r\n"
    project = make(tmp_path / "p", {"img": before})
    [cf] = co.load_captions(project)
    new = cf.text.replace("forest", "beach", 1)
    ch.apply_changeset(project, co.edit_changeset(project, cf, new))
    assert on_disk(project)["img"] == b"zkx_mira, beach\r\nzkx_mira, alt caption\r\n"
    ch.undo(project)
    assert on_disk(project)["img"] == before


def test_an_operation_never_joins_line_two_onto_line_one(tmp_path):
    before = b"zkx_mira, forest, forest,\nzkx_mira, beach\n"
    project = make(tmp_path / "p", {"img": before})
    ch.apply_changeset(project, co.build_changeset(project, co.Dedupe()))
    assert on_disk(project)["img"] == b"zkx_mira, forest\nzkx_mira, beach\n"  # was "zkx_mira, forest, beach\n"
    ch.undo(project)
    assert on_disk(project)["img"] == before


def test_a_tag_on_line_two_is_found_and_only_its_line_changes(tmp_path):
    before = b"zkx_mira, forest\nzkx_mira, beach, photo\n"
    project = make(tmp_path / "p", {"img": before})
    cs = co.build_changeset(project, co.RemoveTag("photo"))  # only on line two: not "unknown tag"
    ch.apply_changeset(project, cs)
    assert on_disk(project)["img"] == b"zkx_mira, forest\nzkx_mira, beach\n"


def test_a_character_cp1252_cannot_hold_makes_the_file_utf8_and_is_reported(tmp_path):
    before = "zkx_mira, café\n".encode("cp1252")
    project = make(tmp_path / "p", {"img": before})
    cs = co.build_changeset(project, co.AddTag("日本"))
    assert [c.rel for c in cs.lossy] == ["dataset/10_zkx_mira/img.txt"]
    ch.apply_changeset(project, cs)
    assert on_disk(project)["img"] == "zkx_mira, café, 日本\n".encode()
    ch.undo(project)
    assert on_disk(project)["img"] == before


def test_utf8_is_the_one_operation_that_changes_how_files_are_stored(tmp_path):
    files = {"bom": CASES["bom"][0], "cp1252": CASES["cp1252"][0], "utf16le": CASES["utf16le"][0], "plain": b"a, b\n"}
    project = make(tmp_path / "p", files)
    cs = co.build_changeset(project, co.ToUtf8())
    assert sorted(c.rel.rsplit("/", 1)[-1] for c in cs.changes) == ["bom.txt", "cp1252.txt", "utf16le.txt"]
    ch.apply_changeset(project, cs)
    after = on_disk(project)
    assert after["bom"] == b"zkx_mira, red scarf\n" and after["plain"] == b"a, b\n"
    assert after["cp1252"] == "zkx_mira, café, “quoted”\n".encode() and after["utf16le"] == b"zkx_mira, snow\r\n"
    ch.undo(project)
    assert on_disk(project) == files
