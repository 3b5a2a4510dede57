"""`lorawb generate` on the sample project, measured by the toy world's reader. Prints the table.

On a copy of the sample project (made by its generator), the toy base model draws the
character sheet's description ``blue hair, orange outfit, scarf`` across the four contexts and
four styles (``--count`` images each). The reader then says:

- the share of candidates that are on-model (blue hair, orange outfit and the scarf);
- how much the pre-sort puts them first: the share of on-model candidates in the top quarter
  when the inbox is sorted by identity (and by prompt following), against the whole inbox, with
  each reference the pre-sort can have: the dataset (the sample has one), four images in
  refs/, and none (the other candidates' consensus: a v0 project);
- a v1 LoRA trained (the sample's settings) on only the candidates the reader keeps (standing in
  for the person), against one on every candidate and one on the sample's own dataset: the
  share of ``zkx_mira, <context>`` drawn as the character.

    OMP_NUM_THREADS=2 python bench/generate_toy.py                 # 4 per context x style: 64 candidates
    python bench/generate_toy.py --count 2 --seeds 4 --no-train   # quicker, no LoRAs
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def on_model(reading: dict[str, str], look: dict[str, str]) -> bool:
    return all(reading[k] == v for k, v in look.items())


def top_quarter(ids: list[str], scores: dict, key: str, good: set[str]) -> tuple[float, int]:
    """(share of ``good`` among the best quarter by ``key``, how many were scored)."""
    scored = sorted((i for i in ids if isinstance(scores.get(i, {}).get(key), float)), key=lambda i: -scores[i][key])
    top = scored[: max(1, len(scored) // 4)]
    return (sum(i in good for i in top) / len(top) if top else 0.0), len(scored)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=4, help="candidates per context x style (default 4: 64)")
    ap.add_argument("--seeds", type=int, default=8, help="images per prompt when checking a LoRA")
    ap.add_argument("--no-train", action="store_true", help="skip the v1 LoRAs")
    ap.add_argument("--keep", default="", help="work in this folder (kept) instead of a temporary one")
    args = ap.parse_args()

    import torch

    from lorawb.core.project import Project
    from lorawb.generate import job, presort
    from lorawb.toyworld import check, reader, sample

    torch.set_num_threads(int(os.environ.get("LORAWB_THREADS") or os.environ.get("OMP_NUM_THREADS") or 2))
    look = dict(sample.CHARACTER)  # hair, outfit, accessory
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        root = check.copy_sample_project(work / "sample_project")
        project = Project.load(root)
        plan = job.plan_generate(project, job.GenerateOptions(count=args.count))
        t = time.perf_counter()
        assert job.start_generate(project, plan, detach=False) == "finished"
        gen_s = time.perf_counter() - t
        recs = plan.records()
        ids = [r["id"] for r in recs]
        readings = {r["id"]: reader.read(root / r["file"]).as_dict() for r in recs}
        good = {i for i in ids if on_model(readings[i], look)}
        share = len(good) / len(ids)

        # the pre-sort with each reference it can have
        rows = []
        dataset_off = root / "dataset.off"

        def score(label: str) -> None:
            out = work / f"scores-{len(rows)}.jsonl"
            done = presort.score_candidates(project, recs, plan.context(), out)
            scores = presort.read_scores(out)
            ident, n = top_quarter(ids, scores, "identity", good)
            prompt, _ = top_quarter(ids, scores, "prompt_following", good)
            rows.append((label, done.reference, n, ident, prompt))

        score("the dataset (the sample)")
        (root / "refs").mkdir()
        for p in sorted((root / "dataset").rglob("*.png"))[::8]:  # one per context
            shutil.copy2(p, root / "refs" / p.name)
        score("refs/: 4 dataset images")
        shutil.rmtree(root / "refs")
        (root / "dataset").rename(dataset_off)
        score("none: a v0 project")
        dataset_off.rename(root / "dataset")

        # the same candidates with the trigger in front of the prompt (what the base model does with an unknown word)
        from dataclasses import replace

        from lorawb.matrix.generate import Generator
        from lorawb.matrix.requests import plan_batches
        from lorawb.train.config import ModelSection

        gen = Generator.load(ModelSection(**plan.model))
        requests = [replace(plan.request(c), prompt=f"{plan.trigger}, {c['prompt']}") for c in plan.candidates]
        images = [im for batch in plan_batches(requests, plan.batch) for im in gen.run_batch(batch)]
        with_trigger = sum(on_model(reader.read(im).as_dict(), look) for im in images) / len(images)
        del gen

        loras = []
        if not args.no_train:
            for label, keep in (
                ("kept candidates only", good),
                ("every candidate", set(ids)),
                ("the sample's dataset", None),
            ):
                t = time.perf_counter()
                proj = work / f"v1-{len(loras)}"
                check.copy_sample_project(proj)
                shutil.rmtree(proj / "inbox")
                if keep is not None:
                    shutil.rmtree(proj / "dataset")
                    dest = proj / "dataset" / f"10_{sample.TRIGGER}"
                    dest.mkdir(parents=True)
                    for r in recs:
                        if r["id"] in keep:
                            src = root / r["file"]
                            shutil.copy2(src, dest / src.name)
                            shutil.copy2(src.with_suffix(".txt"), dest / f"{src.stem}.txt")
                n_images = len(list((proj / "dataset").rglob("*.png")))
                lora = check.train_project(proj, ["sample.every_n_steps=0", "sample.at_start=false"])
                _base, with_lora = check.check_lora(
                    proj / sample.MODEL_DIR, lora, seeds=list(range(args.seeds)), cfg=1.5
                )
                loras.append(
                    (
                        label,
                        n_images,
                        with_lora.character["all"],
                        with_lora.accessory["all"],
                        with_lora.unrelated,
                        time.perf_counter() - t,
                    )
                )

    print(
        f"lorawb generate on the sample: {len(ids)} candidates ({args.count} per context x style, "
        f"{plan.steps} steps, guidance {plan.cfg:g}) in {gen_s:.0f} s, {torch.get_num_threads()} threads"
    )
    print(f"on-model (blue hair, orange outfit, scarf) by the toy reader: {len(good)}/{len(ids)} = {share:.0%}")
    print(f"  the same seeds with the trigger in front of the prompt: {with_trigger:.0%}")
    print()
    print(
        f"{'pre-sort reference':30} {'measured against':32} {'scored':>6} {'top 1/4 by identity':>20} {'by prompt':>10} {'whole inbox':>12}"
    )
    for label, ref, n, ident, prompt in rows:
        print(f"{label:30} {ref:32} {n:>6} {ident:>20.0%} {prompt:>10.0%} {share:>12.0%}")
    if loras:
        print()
        print(f"v1 LoRA (200 steps, the sample's settings), {args.seeds} seeds per context, guidance 1.5")
        print(f"{'trained on':24} {'images':>6} {'character':>10} {'scarf':>6} {'unrelated kept':>15} {'time':>6}")
        for label, n, char, acc, unrel, secs in loras:
            print(f"{label:24} {n:>6} {char:>10.0%} {acc:>6.0%} {unrel:>15.0%} {secs:>5.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
