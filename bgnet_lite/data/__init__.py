"""Datasets: the OCD-like generator, DeepPCB preparation and user folders (chapter 1)."""
