"""dakd: weakly-supervised video anomaly detection by Distilling Aggregated Knowledge (DAKD).

This package is the core: the method and its data model. It owns time (frames <-> snippets <->
segments), the feature cache, configs, annotations and community formats, bags, the Teacher and Student
models, the losses, the training objectives and the one ``fit`` loop, checkpoints, scoring, metrics and
plots. It imports neither ``extractors`` nor ``pipelines``.
"""

__version__ = "0.1.0"
