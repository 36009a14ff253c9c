"""Subcommands of ``notify`` that live in modules of their own; ``cli.py`` registers each."""

__all__: list[str] = []
