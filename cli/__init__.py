"""The ``ensemble-cnn`` command line (click). Only parses options and calls the library."""
