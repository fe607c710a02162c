"""TorchEnsemble's ``VotingClassifier`` on MNIST within a wall-clock deadline (the torch side of benchmarks/peers.py).

    .venv-peers/bin/python benchmarks/peers_torch.py --data ../shared/data/mnist.npz --deadline UNIX_TIME \
        --result OUT.npz [--limit-train N] [--seed 0]

Runs in its own virtual environment (``.venv-peers``: CPU torch and torchensemble, never
dependencies of the package), so it imports nothing of ``ensemble_cnn``. The estimator is
Keras' ``mnist_convnet`` ConvNet written in PyTorch (Conv 32 3x3 ReLU, max-pool 2, Conv 64
3x3 ReLU, max-pool 2, flatten, dropout 0.5, linear 10; PyTorch's default initialization).
The ensemble follows TorchEnsemble's documented MNIST example (docs/quick_start.rst):
``VotingClassifier(estimator=..., n_estimators=...)`` with its default ``voting_strategy="soft"``,
``set_optimizer("Adam", lr=1e-3, weight_decay=5e-4)``, no scheduler, batches of 128 shuffled,
inputs scaled to [0, 1] then normalized with MNIST's mean 0.1307 and sd 0.3081, ``cuda=False``;
``fit`` gets no ``test_loader`` (the example's would pick the epoch on the test digits).

Budget: one epoch of one estimator is timed first (a probe model, then thrown away), with
one prediction of the test digits; :func:`plan_voting` then picks ``n_estimators`` and
``epochs`` so that training and prediction end by ``--deadline``. The result npz holds every
estimator's test probabilities ``member_probabilities`` (K, N, 10), the ensemble's own
(soft: the mean of the estimators' softmax, as ``VotingClassifier.forward``) labels
``soft_labels`` and TorchEnsemble's hard-vote labels ``hard_labels`` (N,); the
last stdout line is ``PEERS_TORCH {json}`` with the settings and timings.
"""
from __future__ import annotations

import argparse
import json
import time

# Keras' mnist_convnet trains each member 15 epochs; the estimators get as many (more when time is left over).
EPOCHS_PER_MEMBER = 15
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 5e-4
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def plan_voting(remaining_s: float, epoch_s: float, predict_s: float, *,
                epochs_per_member: int = EPOCHS_PER_MEMBER) -> tuple[int, int]:
    """``(n_estimators, epochs)`` of a voting ensemble that trains and predicts in ``remaining_s`` seconds.

    ``VotingClassifier.fit`` trains every estimator every epoch, so training costs about
    ``n_estimators * epochs * epoch_s`` and predicting ``n_estimators * predict_s``. As many
    estimators as fit at ``epochs_per_member`` epochs each; the time left over then goes to
    more epochs for all of them. When not even one estimator of ``epochs_per_member`` epochs
    fits, one estimator gets the epochs that fit (at least 1: the run then overruns, and says so).

    Parameters
    ----------
    remaining_s : float
        Seconds left before the deadline.
    epoch_s, predict_s : float
        Measured seconds of one training epoch / one test prediction of one estimator (> 0).
    epochs_per_member : int
        The epochs each estimator gets before more estimators are added (>= 1).

    Returns
    -------
    (n_estimators, epochs) : tuple of int, both >= 1

    Examples
    --------
    >>> plan_voting(600, 10, 1)    # 151 s per estimator at 15 epochs: 3 fit, then 19 epochs each
    (3, 19)
    >>> plan_voting(100, 10, 1)    # not one estimator of 15 epochs: 1 estimator, 9 epochs
    (1, 9)
    """
    if not (epoch_s > 0 and predict_s >= 0 and epochs_per_member >= 1):
        raise ValueError(f"epoch_s must be > 0, predict_s >= 0 and epochs_per_member >= 1; got "
                         f"{epoch_s}, {predict_s}, {epochs_per_member}")
    remaining_s = max(0.0, remaining_s)
    n_estimators = int(remaining_s // (epochs_per_member * epoch_s + predict_s))
    if n_estimators < 1:
        return 1, max(1, int((remaining_s - predict_s) // epoch_s))
    epochs = int((remaining_s - n_estimators * predict_s) // (n_estimators * epoch_s))
    return n_estimators, max(epochs_per_member, epochs)


def mnist_convnet():
    """Keras' ``mnist_convnet`` architecture as a PyTorch module class (input (B, 1, 28, 28), logits (B, 10))."""
    from torch import nn

    class MnistConvNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.Sequential(
                nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Dropout(0.5), nn.Linear(64 * 5 * 5, 10),
            )

        def forward(self, x):
            return self.layers(x)

    return MnistConvNet


def load_tensors(path: str, limit_train: int | None):
    """``(x_train, y_train, x_test, y_test)`` as torch tensors: images (N, 1, 28, 28) normalized, labels int64."""
    import numpy as np
    import torch

    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    if limit_train is not None:
        arrays["x_train"], arrays["y_train"] = arrays["x_train"][:limit_train], arrays["y_train"][:limit_train]

    def images(x):
        return ((torch.from_numpy(x.astype(np.float32) / 255.0) - MNIST_MEAN) / MNIST_STD).unsqueeze(1)

    return (images(arrays["x_train"]), torch.from_numpy(arrays["y_train"].astype(np.int64)),
            images(arrays["x_test"]), torch.from_numpy(arrays["y_test"].astype(np.int64)))


def probabilities(estimator, x, *, batch_size: int = 1000):
    """Softmax of ``estimator`` on ``x`` in eval mode, as a float32 ndarray (N, 10)."""
    import torch
    import torch.nn.functional as F

    estimator.eval()
    with torch.no_grad():
        out = torch.cat([F.softmax(estimator(x[i:i + batch_size]), dim=1) for i in range(0, len(x), batch_size)])
    return out.numpy()


def probe(estimator_class, train_loader, x_test) -> tuple[float, float]:
    """Seconds of one training epoch and of one test prediction of one fresh estimator (as ``fit`` trains it)."""
    import torch
    from torch import nn

    estimator = estimator_class()
    optimizer = torch.optim.Adam(estimator.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    criterion = nn.CrossEntropyLoss()
    start = time.perf_counter()
    estimator.train()
    for data, target in train_loader:
        optimizer.zero_grad()
        loss = criterion(estimator(data), target)
        loss.backward()
        optimizer.step()
    epoch_s = time.perf_counter() - start
    start = time.perf_counter()
    probabilities(estimator, x_test)
    return epoch_s, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="MNIST as a Keras mnist.npz")
    parser.add_argument("--deadline", type=float, required=True, help="time.time() by which training must end")
    parser.add_argument("--result", required=True, help="npz to write (the caller's temporary folder)")
    parser.add_argument("--limit-train", type=int, default=None, help="train on the first N training digits")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np
    import torch
    from importlib.metadata import version

    from torch.utils.data import DataLoader, TensorDataset
    from torchensemble import VotingClassifier
    from torchensemble.utils import operator

    torch.manual_seed(args.seed)
    x_train, y_train, x_test, y_test = load_tensors(args.data, args.limit_train)
    train_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=BATCH_SIZE, shuffle=True)
    estimator_class = mnist_convnet()
    epoch_s, predict_s = probe(estimator_class, train_loader, x_test)
    remaining_s = args.deadline - time.time()
    n_estimators, epochs = plan_voting(remaining_s, epoch_s, predict_s)
    print(f"torch probe: {epoch_s:.1f} s per estimator-epoch, {predict_s:.1f} s per test prediction; "
          f"{remaining_s / 60:.1f} min left: {n_estimators} estimators x {epochs} epochs", flush=True)

    start = time.perf_counter()
    model = VotingClassifier(estimator=estimator_class, n_estimators=n_estimators, cuda=False)
    model.set_optimizer("Adam", lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    model.fit(train_loader, epochs=epochs, log_interval=10 ** 9, save_model=False)  # one log line per estimator-epoch
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    members = np.stack([probabilities(estimator, x_test) for estimator in model.estimators_])
    # the ensemble's own vote: soft (its default), the mean of the estimators' softmax, as VotingClassifier.forward
    soft = members.mean(axis=0).argmax(axis=1)
    hard = operator.majority_vote([torch.from_numpy(p) for p in members]).argmax(dim=1).numpy()
    predict_all_s = time.perf_counter() - start
    np.savez(args.result, member_probabilities=members, soft_labels=soft.astype(np.int64),
             hard_labels=hard.astype(np.int64))
    summary = {
        "n_estimators": n_estimators, "epochs": epochs, "voting_strategy": model.voting_strategy,
        "probe_epoch_seconds": round(epoch_s, 2), "probe_predict_seconds": round(predict_s, 2),
        "fit_seconds": round(fit_s, 2), "predict_seconds": round(predict_all_s, 2),
        "overran_seconds": round(max(0.0, time.time() - args.deadline), 2),
        "torch": torch.__version__, "torchensemble": version("torchensemble"),
        "torch_threads": torch.get_num_threads(), "train_digits": len(x_train),
        "soft_accuracy": float(np.mean(soft == y_test.numpy())),
        "members_accuracy": [float(np.mean(p.argmax(1) == y_test.numpy())) for p in members],
        "recipe": {"optimizer": "Adam", "lr": LEARNING_RATE, "weight_decay": WEIGHT_DECAY,
                     "batch_size": BATCH_SIZE, "normalize": [MNIST_MEAN, MNIST_STD], "scheduler": None},
    }
    print("PEERS_TORCH " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
