"""ensemble-cnn: an ensemble of ReLU + dropout ConvNets for MNIST, combined by majority vote.

Importing this package does not start TensorFlow; training and evaluation do (quietly,
see :mod:`ensemble_cnn.runtime`).
"""
from ensemble_cnn.config import TrainConfig
from ensemble_cnn.data.mnist import DataError, MnistData, load_mnist
from ensemble_cnn.inference.ensemble import Ensemble
from ensemble_cnn.errors import BackendError, RunFolderError
from ensemble_cnn.evaluation.evaluate import evaluate_run
from ensemble_cnn.data.expanded import write_expanded
from ensemble_cnn.models import ARCHITECTURES, build_model, load_member
from ensemble_cnn.inference.preprocess import preprocess_digits
from ensemble_cnn.training.recipes import RECIPES
from ensemble_cnn.storage.run_folder import RunFolder
from ensemble_cnn.training.train import TrainResult, train_ensemble
from ensemble_cnn.inference.vote import VOTES, majority_vote, soft_vote, vote

__all__ = [
    "ARCHITECTURES",
    "BackendError",
    "DataError",
    "Ensemble",
    "MnistData",
    "RECIPES",
    "RunFolder",
    "RunFolderError",
    "TrainConfig",
    "TrainResult",
    "VOTES",
    "build_model",
    "evaluate_run",
    "load_member",
    "load_mnist",
    "majority_vote",
    "preprocess_digits",
    "soft_vote",
    "train_ensemble",
    "vote",
    "write_expanded",
]
__version__ = "0.2.0"
