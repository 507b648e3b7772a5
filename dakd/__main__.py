"""``python -m dakd`` and ``torchrun -m dakd``: a shim to the command line, which lives with the commands."""

from pipelines.cli import main

main()
