"""``python -m notifier`` runs the ``notify`` command."""

from .cli import main

main()
