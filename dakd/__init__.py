"""dakd: weakly-supervised video anomaly detection by Distilling Aggregated Knowledge (DAKD)."""

__version__ = "0.1.0"
