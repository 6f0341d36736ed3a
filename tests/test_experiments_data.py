"""The offline MNIST loader: the dataset's known facts, the splits, and clear errors for bad files."""
import shutil

import numpy as np
import pytest

from experiments.data import DEFAULT_ROOT, MNIST_FILES, DataError, load_mnist

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def test_the_original_60000_training_and_10000_test_images(mnist):
    labels = np.concatenate([mnist.train.labels, mnist.val.labels])  # train + val = the 60,000 in order
    assert len(labels) == 60_000 and len(mnist.test) == 10_000
    assert np.bincount(labels, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.test.labels, minlength=10).tolist() == TEST_COUNTS
    assert mnist.train.labels[:5].tolist() == [5, 0, 4, 1, 9]


def test_splits_are_50k_10k_10k_of_uint8_pixels(mnist):
    assert (len(mnist.train), len(mnist.val), len(mnist.test)) == (50_000, 10_000, 10_000)
    for split in (mnist.train, mnist.val, mnist.test):
        assert split.images.shape == (len(split), 784) and split.images.dtype == np.uint8
    features = mnist.val.features(np.float32)
    assert features.dtype == np.float32 and 0.0 == features.min() and features.max() == 1.0


def test_train_subset_takes_the_first_n_and_keeps_val_and_test(mnist):
    small = load_mnist(DEFAULT_ROOT, 2000)
    assert len(small.train) == 2000 and len(small.val) == 10_000 and len(small.test) == 10_000
    np.testing.assert_array_equal(small.train.labels, mnist.train.labels[:2000])
    with pytest.raises(ValueError, match="train_subset"):
        load_mnist(DEFAULT_ROOT, 60_000)


@pytest.fixture
def data_copy(tmp_path):
    """A copy of the four .gz files in tmp_path/MNIST/raw (no decompressed files)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        shutil.copy(DEFAULT_ROOT / "MNIST" / "raw" / f"{name}.gz", raw / f"{name}.gz")
    return tmp_path


def test_corrupt_gz_file_is_named_in_the_error(data_copy):
    gz = data_copy / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    gz.write_bytes(b"this is not gzip" * 10)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        load_mnist(data_copy)


def test_missing_file_is_named_in_the_error(data_copy):
    (data_copy / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz.*missing"):
        load_mnist(data_copy)


def test_decompressed_file_with_wrong_content_is_named_in_the_error(data_copy):
    load_mnist(data_copy)  # decompresses and verifies
    target = data_copy / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    content = bytearray(target.read_bytes())
    content[-1] ^= 0xFF  # same size, other bytes
    target.write_bytes(bytes(content))
    load_mnist.cache_clear()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte is corrupt"):
        load_mnist(data_copy)
