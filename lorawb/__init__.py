"""lorawb: a terminal workbench for character-consistency LoRAs."""

__version__ = "0.1.0"
