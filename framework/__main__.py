"""Allow ``python -m framework``, the same as the ``fw`` command."""

from framework.cli import console

raise SystemExit(console())
