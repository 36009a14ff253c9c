"""Channels beyond e-mail: reports for web forms and phone lines, and printed letters."""

__all__: list[str] = []
