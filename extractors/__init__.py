"""Video -> per-snippet features: decoding (PyAV), crops and contract-driven preprocessing, the backbone
registry and the backbones with their weights, and the extraction engine every command that runs
backbones calls. Imports only ``dakd``, never ``pipelines``."""
