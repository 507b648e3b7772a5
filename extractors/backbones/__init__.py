"""The built-in backbones; importing a module registers its backbones."""
