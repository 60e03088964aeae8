"""``python -m xlate`` runs the command line, like the ``xlate`` executable."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="xlate")
