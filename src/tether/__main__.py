"""``python -m tether``: the same as the ``tether`` command."""

from .cli._main import main

raise SystemExit(main())
