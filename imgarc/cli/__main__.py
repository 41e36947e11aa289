"""`python -m imgarc.cli`: the same as the `imgarc` command."""

from imgarc.cli.app import main

main()
