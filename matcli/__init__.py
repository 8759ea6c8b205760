"""matcli: a command-line batch tool for matrix problems."""

__version__ = "0.1.0"
