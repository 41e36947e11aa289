"""`python -m imgarc.cli`: the same as the `imgarc` command."""

from imgarc.cli.app import run

if __name__ == "__main__":  # worker processes (spawn) import this module again: they must not run main
    run()
