"""The subcommands of ``notify``, one module per concern; ``notifier.cli`` registers each and
``shell`` holds what they share (consoles, common options, error to exit status)."""

__all__: list[str] = []
