"""The core: project, config, dataset, index, captions, triage. No UI, no torch."""
