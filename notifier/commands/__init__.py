"""Sub-commands of ``notify`` kept out of cli.py, each registered there with one line."""
