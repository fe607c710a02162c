"""Using a trained run: the Ensemble, votes, image inputs and preprocessing, predict, export, serve."""
