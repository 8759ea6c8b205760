"""The ``matcli`` console script: install the signal watcher, then run the CLI.

Kept apart from :mod:`matcli.cli.app` so that the process-wide signal handling is set up only
when matcli is its own process, never when the CLI runs inside another program (tests, notebooks).
"""

from __future__ import annotations

import sys


def console_main() -> None:
    """Entry point of the ``matcli`` console script and of ``python -m matcli``."""
    from matcli.cli import signals

    signals.install()
    from matcli.cli.app import main

    sys.exit(main())
