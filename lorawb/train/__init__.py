"""Training: config schema, data, caches, the loop, kohya export, run processes.

    config.py     the TrainConfig schema, resolve_config / load_run_config (no torch)
    process.py    start_run / stop_run / resume_run, detached workers, accelerate launch (no torch)
    runfolder.py  events.py   the run folder and events.jsonl contract (no torch)
    modelpath.py  base-model path checks and family detection (no torch)
    models.py     loading base models; SD1/SD2 vs SDXL behind one interface
    data.py       dataset scan, buckets, caption transforms, batch order
    caches.py     latent cache (disk) and text-embedding cache
    batches.py    the batch stream turned into latents + conditioning each step
    lora.py       peft LoRA injection (UNet, text encoders)
    kohya.py      kohya-format LoRA files and ss_* metadata
    trainer.py    the loop: lock, load, steps, samples, checkpoints, resume state
    worker.py     `python -m lorawb.train.worker RUN_DIR`, the detached process
    monitor.py    compare.py    form.py   what the Train tab and `lorawb watch` read and show (no torch)

Only the modules that train import torch; ``config``, ``process``, ``events`` and
``runfolder`` stay light so the app and ``lorawb watch`` start fast.
"""
