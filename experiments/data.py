"""MNIST, shipped inside the project and read offline with ``torchvision.datasets.MNIST``.

The four original idx files live gzip-compressed in ``data/MNIST/raw/``. On first
use they are decompressed next to themselves (atomically) and the decompressed
files' MD5 checksums are verified; torchvision then reads them without ever
trying the network. A damaged or missing archive stops with a ``DataError`` naming
the file and what to do; a damaged decompressed file is decompressed again.

Splits: the first 50,000 training images train, the last 10,000 validate
(hyperparameters are chosen there), and the 10,000 test images are only reported.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.errors import UserError
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


class DataError(UserError):
    """A missing, damaged or unwritable MNIST file, with what to do about it."""


RESTORE = ("restore the project's copy (`git checkout data/MNIST/raw`) or point --data-dir at a folder "
           "holding MNIST/raw/ with the four original .gz files")


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _gunzipped_blocks(gz: Path):
    """The decompressed content of ``gz`` in blocks; a damaged archive is a ``DataError`` that names it.

    A flipped byte shows up as whichever error its position causes: a bad header (``BadGzipFile``),
    an invalid deflate stream (``zlib.error``), a file cut short (``EOFError``), a CRC or length
    mismatch in the trailer (``BadGzipFile``).
    """
    try:
        with gzip.open(gz, "rb") as src:
            while block := src.read(1 << 20):
                yield block
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"MNIST archive {gz} is damaged and cannot be decompressed ({err}); {RESTORE}") from err


def decompress(gz: Path | str) -> Path:
    """gunzip the MNIST archive ``gz`` beside itself through a temporary file, checking size and MD5 before
    the decompressed file lands; return its path.

    So the decompressed file only ever appears complete and verified: neither a crash nor a damaged
    archive leaves half a file or a wrong one.
    """
    gz = Path(gz)
    target = gz.with_suffix("")
    size, md5 = MNIST_FILES[target.name]

    def gunzip(tmp: Path) -> None:
        digest, written = hashlib.md5(), 0
        with open(tmp, "wb") as dst:
            for block in _gunzipped_blocks(gz):
                dst.write(block)
                digest.update(block)
                written += len(block)
        if written != size or digest.hexdigest() != md5:
            raise DataError(f"MNIST archive {gz} is damaged: it decompresses to {written:,} bytes with MD5 "
                            f"{digest.hexdigest()}, not the original's {size:,} bytes with MD5 {md5}; {RESTORE}")

    try:
        write_atomically(target, gunzip)
    except OSError as err:  # reading errors are DataErrors already: this is the folder refusing the write
        raise DataError(f"cannot write the decompressed MNIST file {target} ({err.strerror or err}); make "
                        f"{target.parent} writable or pass a writable copy of the data folder with "
                        f"--data-dir") from err
    return target


def ensure_mnist_files(root: Path | str = DEFAULT_ROOT) -> Path:
    """Make sure ``<root>/MNIST/raw`` holds the four verified decompressed files; return that folder.

    A decompressed file that is missing, cut short or altered is decompressed again from its archive.
    """
    raw = Path(root) / "MNIST" / "raw"
    for name, (size, md5) in MNIST_FILES.items():
        target, gz = raw / name, raw / (name + ".gz")
        if target.exists() and target.stat().st_size == size and _md5(target) == md5:
            continue
        if not gz.exists():
            state = "is corrupt" if target.exists() else "is missing too"
            raise DataError(f"MNIST file {gz} is missing (and {target.name} {state}); {RESTORE}")
        decompress(gz)
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

    n_train = N_TRAIN if train_subset is None else int(train_subset)
    if not 1 <= n_train <= N_TRAIN:
        raise ValueError(f"train_subset must be between 1 and {N_TRAIN:,} (the training split), got {train_subset}")
    ensure_mnist_files(root)
    full_train = TorchvisionMNIST(str(root), train=True, download=False)
    test = TorchvisionMNIST(str(root), train=False, download=False)

    def split(ds, start, stop) -> Split:
        images = ds.data[start:stop].reshape(-1, 28 * 28).numpy()
        return Split(images, ds.targets[start:stop].numpy().astype(np.int64))

    return MNIST(train=split(full_train, 0, n_train),
                 val=split(full_train, N_TRAIN, N_TRAIN + N_VAL),
                 test=split(test, 0, len(test.targets)))
