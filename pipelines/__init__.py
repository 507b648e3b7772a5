"""The commands: one module per command with one ``run(job)`` (parse the job, call the engines in
``extractors`` and ``dakd``, write the outputs), the jobs they take (``jobs.py``), and the command line
(``cli.py``), the front door. A command module never imports another command module."""
