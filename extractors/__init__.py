"""Video -> per-snippet features: decoding, crops, the backbone registry, weights and the backbones."""
