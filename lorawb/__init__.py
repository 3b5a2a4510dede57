"""lorawb: a terminal workbench for character-consistency LoRAs."""

import logging as _logging

__version__ = "0.1.0"

# bitsandbytes (imported by peft wherever it is installed) warns on every CPU process start that an
# optional 4-bit kernel package is missing; lorawb's int8/NF4 paths do not need it, and the line
# would stand in every `lorawb generate`, matrix and run log as if something had failed.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
