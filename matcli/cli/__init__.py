"""Typer command-line interface: parse, build a JobRequest, delegate. No numerics here."""
