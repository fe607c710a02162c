"""Files on disk: atomic writes, output-path checks, sha256, the run folder and its lock. No TensorFlow."""
