"""MNIST, shipped inside the project and read offline with ``torchvision.datasets.MNIST``.

The four original idx files live gzip-compressed in ``data/MNIST/raw/``. On first
use they are decompressed next to themselves (atomically) and the decompressed
files' MD5 checksums are verified; torchvision then reads them without ever
trying the network. A missing or corrupt file stops with an error naming the
file and what to do.

Splits: the first 50,000 training images train, the last 10,000 validate
(hyperparameters are chosen there), and the 10,000 test images are only reported.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.files import write_atomically

DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "data"
N_TRAIN, N_VAL = 50_000, 10_000

# decompressed file name → (size in bytes, MD5 of the decompressed file), from the MNIST distribution
MNIST_FILES = {
    "train-images-idx3-ubyte": (47_040_016, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60_008, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7_840_016, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10_008, "27ae3e4e09519cfbb04c329615203637"),
}


class DataError(RuntimeError):
    """A missing or corrupt MNIST file, with what to do about it."""


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _decompress(gz: Path, target: Path) -> None:
    """gunzip ``gz`` into ``target`` through a temporary file, so a crash never leaves half a file."""
    def gunzip(tmp: Path) -> None:
        with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)

    try:
        write_atomically(target, gunzip)
    except (OSError, EOFError) as err:
        raise DataError(f"{gz} is not a readable gzip file ({err}); copy it again from the original "
                        f"MNIST distribution (the project ships it under data/MNIST/raw/)") from err


def ensure_mnist_files(root: Path | str = DEFAULT_ROOT) -> Path:
    """Make sure ``<root>/MNIST/raw`` holds the four verified decompressed files; return that folder."""
    raw = Path(root) / "MNIST" / "raw"
    for name, (size, md5) in MNIST_FILES.items():
        target, gz = raw / name, raw / (name + ".gz")
        if not target.exists() or target.stat().st_size != size:
            if not gz.exists():
                raise DataError(f"MNIST file {gz} is missing (and so is {target.name}); the project ships the "
                                f"four MNIST .gz files in data/MNIST/raw/ — restore them (git checkout data/) "
                                f"or pass the folder that holds MNIST/raw/ with --data-dir")
            _decompress(gz, target)
        if target.stat().st_size != size or _md5(target) != md5:
            raise DataError(f"MNIST file {target} is corrupt (its size or MD5 differs from the original "
                            f"{md5}); delete it and make sure {gz.name} is the original file")
    return raw


@dataclass(frozen=True)
class Split:
    """Images as uint8 rows of 784 pixels and integer labels, on the CPU."""

    images: np.ndarray  # (n, 784) uint8
    labels: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def features(self, dtype=np.float32) -> np.ndarray:
        """Pixels scaled to [0, 1] in ``dtype``, shape (n, 784)."""
        return self.images.astype(dtype) / dtype(255)


@dataclass(frozen=True)
class MNIST:
    train: Split
    val: Split
    test: Split


@functools.lru_cache(maxsize=4)
def load_mnist(root: str | Path = DEFAULT_ROOT, train_subset: int | None = None) -> MNIST:
    """The three splits: 50,000 train (or its first ``train_subset``), 10,000 validation, 10,000 test."""
    from torchvision.datasets import MNIST as TorchvisionMNIST

    ensure_mnist_files(root)
    full_train = TorchvisionMNIST(str(root), train=True, download=False)
    test = TorchvisionMNIST(str(root), train=False, download=False)

    def split(ds, start, stop) -> Split:
        images = ds.data[start:stop].reshape(-1, 28 * 28).numpy()
        return Split(images, ds.targets[start:stop].numpy().astype(np.int64))

    n_train = N_TRAIN if train_subset is None else int(train_subset)
    if not 1 <= n_train <= N_TRAIN:
        raise ValueError(f"train_subset must be between 1 and {N_TRAIN}, got {train_subset}")
    return MNIST(train=split(full_train, 0, n_train),
                 val=split(full_train, N_TRAIN, N_TRAIN + N_VAL),
                 test=split(test, 0, len(test.targets)))
