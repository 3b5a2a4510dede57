"""Toy world: procedural characters, an attribute reader, tiny model builder."""
