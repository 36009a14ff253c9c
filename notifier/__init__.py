"""notifier: find who owns an exposed address and tell them, with evidence."""

__version__ = "0.1.0"
