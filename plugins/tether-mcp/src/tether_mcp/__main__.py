"""``python -m tether_mcp``: the same as ``tether mcp``."""

import sys

from ._command import run_command

sys.exit(run_command(sys.argv[1:], prog="python -m tether_mcp"))
