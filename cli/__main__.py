"""``python -m cli`` (in the source tree) or ``python -m ensemble_cnn_cli`` (installed) = the ``ensemble-cnn`` command."""
from .main import main

main(prog_name="ensemble-cnn")
