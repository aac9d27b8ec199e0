"""`python -m mtdqn.cli`: the `mtdqn` command."""

from mtdqn.cli import main

main()
