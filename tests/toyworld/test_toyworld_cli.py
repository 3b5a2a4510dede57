"""`lorawb toyworld score|dataset|pretrain|check`."""

from __future__ import annotations

import json

from lorawb.cli import main
from lorawb.toyworld import world


def _draw(tmp_path, name, **kw):
    spec = world.Spec(**{"hair": "blue", "outfit": "orange", "accessory": "scarf", "context": "forest", **kw})
    p = tmp_path / name
    world.render(spec, 128).save(p)
    return p


def test_score_prints_attributes_and_share(tmp_path, capsys):
    _draw(tmp_path, "a.png")
    _draw(tmp_path, "b.png", context="bar")
    _draw(tmp_path, "c.png", hair="red")
    assert main(["toyworld", "score", str(tmp_path), "--expect", "zkx_mira, blue hair, forest"]) == 0
    out = capsys.readouterr().out
    assert "a.png: hair=blue, outfit=orange, accessory=scarf, context=forest" in out
    assert "expect 'zkx_mira, blue hair, forest': 33% of 3 match (hair 67%, context 67%)" in out


def test_score_json(tmp_path, capsys):
    p = _draw(tmp_path, "a.png", style="dithered")
    assert main(["toyworld", "score", str(p), "--expect", "blue hair", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["images"][0]["hair"] == "blue" and doc["images"][0]["style"] == "dithered"
    assert doc["expect"]["all_match"] == 1.0 and doc["expect"]["want"] == {"hair": "blue"}


def test_score_errors_are_one_line(tmp_path, capsys):
    assert main(["toyworld", "score", str(tmp_path / "missing.png")]) == 2
    assert "missing.png: no such file or folder" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"junk")
    good = _draw(tmp_path, "good.png")
    assert main(["toyworld", "score", str(bad), str(good)]) == 0  # the readable one is still scored
    io = capsys.readouterr()
    assert "good.png: hair=blue" in io.out and "bad.png: cannot read image" in io.err
    assert main(["toyworld", "score", str(good), "--expect", "a cat"]) == 2
    assert "names no toy-world attribute" in capsys.readouterr().err


def test_dataset_command(tmp_path, capsys):
    dest = tmp_path / "ds"
    args = ["toyworld", "dataset", str(dest), "-n", "4", "--trigger", "qvr", "--context", "beach", "--omit", "style"]
    assert main(args) == 0
    caps = sorted((dest / "10_qvr").glob("*.txt"))
    assert len(caps) == 4
    for c in caps:
        tags = c.read_text().strip().split(", ")
        assert tags[0] == "qvr" and "beach" in tags and not set(tags) & set(world.STYLES)
    assert main(["toyworld", "dataset", str(dest), "--hair", "pink"]) == 2
    assert "unknown hair 'pink'" in capsys.readouterr().err


def test_pretrain_and_check_have_help(capsys):
    for cmd in ("pretrain", "check"):
        try:
            main(["toyworld", cmd, "--help"])
        except SystemExit as exc:
            assert exc.code == 0
    out = capsys.readouterr().out
    assert "--seconds" in out and "--weight" in out
