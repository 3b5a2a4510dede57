"""`lorawb matrix ...` end to end through the command line (the same code the tab calls)."""

from __future__ import annotations

import json

from lorawb.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_new_writes_a_spec_and_says_its_size_and_time(lora_project, capsys):
    toml = lora_project / "lorawb.toml"
    toml.write_text(toml.read_text() + '\n[tags.groups]\ncontext = ["forest", "bar"]\nstyle = ["watercolor", "flat"]\n')
    code, out, _ = run(capsys, "matrix", "new", str(lora_project), "v1", "--weights", "0,1", "--seeds", "0-2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "matrices/v1/matrix.toml"
    spec = (lora_project / lines[0]).read_text()
    assert "checkpoint = [1, 2]" in spec and "weight = [0.0, 1.0]" in spec and "seed = [0, 1, 2]" in spec
    assert 'prompt = "{trigger}, {context}, {style}"' in spec  # from [tags.groups]
    assert 'context = ["forest", "bar"]' in spec and 'style = ["watercolor", "flat"]' in spec
    assert 'controls = ["forest", "bar"]' in spec  # no sample prompts without the trigger: the scenes alone
    # (2 checkpoints x weight 1 + the base drawn once) x (4 prompts + 2 controls) x 3 seeds
    assert lines[1].startswith("  54 images: ")
    assert "measured on matrix small" in lines[2]  # the speed of the matrix already drawn here
    code, out, _ = run(capsys, "matrix", "show", str(lora_project), "v1", "--json")
    data = json.loads(out)
    assert (data["cells"], data["done"], data["state"]) == (54, 0, "new")


def test_show_list_rate_and_promote(lora_project, capsys, monkeypatch):
    monkeypatch.chdir(lora_project)
    code, out, _ = run(capsys, "matrix", "show", "small", "--cells")
    assert code == 0 and "small  finished  18/18 cells" in out
    assert (
        "recommendation: no embedder configured: identity, leak, memorisation and prompt following are not measured"
        in out
    )
    ids = [line.split()[1] for line in out.splitlines() if line[:2] in ("  ", "+ ", "- ") and "drawn" in line]
    assert len(ids) == 18
    code, out, _ = run(capsys, "matrix", "list")
    assert "small" in out and "18/18" in out
    code, out, _ = run(capsys, "matrix", "show", ".", "small", "--json", "--cells")
    cells = json.loads(out)["cells_list"]
    pick = next(
        c["id"] for c in cells if c.get("checkpoint") == "step 2" and c.get("weight") == "weight 1" and c.get("context")
    )
    code, out, _ = run(capsys, "matrix", "rate", "small", pick[:6], "--good")
    assert code == 0 and "1 cell rated good" in out
    code, out, err = run(capsys, "matrix", "promote", "small", "--good")
    assert code == 0 and out.splitlines()[0] == f"inbox/small-{pick}.png"
    assert (lora_project / f"inbox/small-{pick}.txt").read_text().startswith("zkx_mira, ")
    code, out, err = run(capsys, "matrix", "promote", "small", pick)
    assert code == 1 and "already in the inbox" in err


def test_export_and_errors(lora_project, capsys, monkeypatch):
    monkeypatch.chdir(lora_project)
    code, out, _ = run(capsys, "matrix", "export", "small", "--cols", "checkpoint", "--pages", "none")
    assert code == 0 and out.strip().endswith("matrices/small/grid.png")
    code, _, err = run(capsys, "matrix", "export", "small", "--page", "7")
    assert code == 2 and "no page 7" in err
    (lora_project / "matrices" / "small" / "matrix.toml").write_text('[matrix]\nprompt = "{trigger}, {mood}"\n')
    code, _, err = run(capsys, "matrix", "show", "small")
    assert code == 2 and "matrix.toml:2: matrix.prompt: {mood} has no axis" in err
    code, _, err = run(capsys, "matrix", "show", "nope")
    assert code == 2 and "no matrix 'nope'" in err
