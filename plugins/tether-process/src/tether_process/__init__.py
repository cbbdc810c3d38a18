"""tether backend ``process``: a local program on a pseudo-terminal, kept alive by tether.

Registered through the ``tether.backends`` entry point, exactly as any
third-party plugin would be; it uses nothing from tether but its public API.
"""

from __future__ import annotations

from ._backend import DEFAULT_STRATEGIES as DEFAULT_STRATEGIES
from ._backend import ProcessBackend as ProcessBackend
from ._backend import default_runtime_dir as default_runtime_dir
from ._link import ProcessLink as ProcessLink
from ._options import ProcessOptions as ProcessOptions
from ._osc import MARK_OSC as MARK_OSC
from ._osc import CommandMark as CommandMark
from ._osc import CwdReport as CwdReport
from ._osc import OscScanner as OscScanner
from ._osc import encode_mark as encode_mark
from ._osc import encode_osc7 as encode_osc7
from ._osc import parse_mark as parse_mark
from ._osc import parse_osc7 as parse_osc7
from ._tmux import TmuxHandle as TmuxHandle

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_STRATEGIES", "MARK_OSC",
    "CommandMark", "CwdReport", "OscScanner", "ProcessBackend", "ProcessLink", "ProcessOptions",
    "TmuxHandle",
    "default_runtime_dir", "encode_mark", "encode_osc7", "parse_mark", "parse_osc7",
]
