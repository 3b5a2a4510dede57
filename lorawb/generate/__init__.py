"""`lorawb generate`: a first synthetic dataset (v0) from a character sheet.

- ``grid``: the variation grid (contexts × styles × poses × expressions × outfits × count),
  each candidate's prompt, trigger-first caption, seed and id (no torch);
- ``poses``: the built-in pose library and its OpenPose skeleton images (no torch);
- ``job``: the plan and the detached job that draws the candidates into ``inbox/`` with their
  provenance (the shared image-job machinery of lorawb.matrix.imagejob);
- ``presort``: identity and prompt-following scores of the candidates (lorawb.matrix.scores),
  read back by Triage to sort the inbox.

The character sheet itself is ``[generate]`` in lorawb.toml (lorawb.core.charsheet).
"""
