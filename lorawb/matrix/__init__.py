"""Prompt-matrix tester (a later milestone)."""
