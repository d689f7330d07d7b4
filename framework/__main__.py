"""Allow ``python -m framework``, the same as the ``fw`` command."""

from framework.cli import main

raise SystemExit(main())
