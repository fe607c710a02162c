"""ensemble-cnn: an ensemble of ReLU + dropout ConvNets for MNIST, combined by majority vote.

Importing this package does not start TensorFlow; training and evaluation do.
"""
from ensemble_cnn.config import TrainConfig
from ensemble_cnn.data import DataError, MnistData, load_mnist
from ensemble_cnn.errors import BackendError
from ensemble_cnn.evaluate import evaluate_run, load_member
from ensemble_cnn.expanded import write_expanded
from ensemble_cnn.models import ARCHITECTURES, build_model
from ensemble_cnn.train import RunFolderError, TrainResult, train_ensemble
from ensemble_cnn.verify import verify_members
from ensemble_cnn.vote import majority_vote, soft_vote, vote

__all__ = [
    "ARCHITECTURES",
    "BackendError",
    "DataError",
    "MnistData",
    "RunFolderError",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "evaluate_run",
    "load_member",
    "load_mnist",
    "majority_vote",
    "soft_vote",
    "train_ensemble",
    "verify_members",
    "vote",
    "write_expanded",
]
__version__ = "0.1.0"
