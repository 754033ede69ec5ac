"""Command-line glue: argument parsing and the ``run_*`` functions behind ``uc-datasets``.

``cli`` is the entry point (``uc-datasets``, ``python -m uc_datasets``) with ``protect`` and
``verify``; ``push`` and ``evaluate`` hold those commands' arguments and runners. The library
modules import nothing from here.
"""
