"""``python -m matcli``."""

from matcli.cli.app import console_main

console_main()
