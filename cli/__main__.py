"""``python -m cli`` = the ``ensemble-cnn`` command."""
from cli.main import main

main(prog_name="ensemble-cnn")
