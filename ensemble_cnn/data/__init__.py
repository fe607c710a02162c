"""MNIST and training data: the sources, the per-member training pools, expanded sets. No TensorFlow."""
