"""Training: config schema, data, caches, the loop, kohya export, run processes.

Only the modules that train import torch; ``config``, ``events`` and
``runfolder`` stay light so the app and ``lorawb watch`` start fast.
"""
