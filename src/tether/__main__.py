"""``python -m tether``: the same as the ``tether`` command."""

from ._cli import main

raise SystemExit(main())
