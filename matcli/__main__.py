"""``python -m matcli``."""

from matcli.cli.entry import console_main

console_main()
