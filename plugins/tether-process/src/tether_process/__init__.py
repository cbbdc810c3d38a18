"""tether backend ``process``: a local program on a pseudo-terminal, kept alive by tether.

Registered through the ``tether.backends`` entry point, exactly as any
third-party plugin would be; it uses nothing from tether but its public API.
The escape-sequence scanner it uses is tether's own (``tether.OscScanner``).
"""

from __future__ import annotations

from ._backend import DEFAULT_STRATEGIES as DEFAULT_STRATEGIES
from ._backend import ProcessBackend as ProcessBackend
from ._backend import default_runtime_dir as default_runtime_dir
from ._link import ProcessLink as ProcessLink
from ._options import ProcessOptions as ProcessOptions
from ._tmux import TmuxHandle as TmuxHandle

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_STRATEGIES", "ProcessBackend", "ProcessLink", "ProcessOptions", "TmuxHandle", "default_runtime_dir",
]
