"""``python -m distgan``: the command line (``distgan.cli``)."""

from distgan.cli import main

raise SystemExit(main())
