"""``python -m labeler.cli``: the command line."""

from . import main

main()
