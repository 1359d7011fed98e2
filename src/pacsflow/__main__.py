"""`python -m pacsflow` runs the command-line interface."""

from pacsflow.cli import main

main()
