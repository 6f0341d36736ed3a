"""The offline MNIST loader: the dataset's known facts, the splits, and clear errors for bad files."""
import gzip
import shutil

import numpy as np
import pytest

from experiments.data import DEFAULT_ROOT, MNIST_FILES, DataError, decompress, ensure_mnist_files, load_mnist

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_the_original_60000_training_and_10000_test_images(data):
    labels = np.concatenate([data.train.labels, data.val.labels])  # train + val = the 60,000 in order
    assert len(labels) == 60_000 and len(data.test) == 10_000
    assert np.bincount(labels, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(data.test.labels, minlength=10).tolist() == TEST_COUNTS
    assert data.train.labels[:5].tolist() == [5, 0, 4, 1, 9]


def test_splits_are_50k_10k_10k_of_uint8_pixels(data):
    assert (len(data.train), len(data.val), len(data.test)) == (50_000, 10_000, 10_000)
    for split in (data.train, data.val, data.test):
        assert split.images.shape == (len(split), 784) and split.images.dtype == np.uint8
    features = data.val.features(np.float32)
    assert features.dtype == np.float32 and 0.0 == features.min() and features.max() == 1.0


def test_train_subset_takes_the_first_n_and_keeps_val_and_test(data):
    small = load_mnist(DEFAULT_ROOT, 2000)
    assert len(small.train) == 2000 and len(small.val) == 10_000 and len(small.test) == 10_000
    np.testing.assert_array_equal(small.train.labels, data.train.labels[:2000])
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


def test_a_damaged_decompressed_file_is_decompressed_again(data_copy):
    load_mnist(data_copy)  # decompresses and verifies
    target = data_copy / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    original = target.read_bytes()
    content = bytearray(original)
    content[-1] ^= 0xFF  # same size, other bytes
    target.write_bytes(bytes(content))
    load_mnist.cache_clear()
    assert np.bincount(load_mnist(data_copy).test.labels).tolist() == TEST_COUNTS
    assert target.read_bytes() == original


def test_a_damaged_decompressed_file_without_its_archive_is_named(data_copy):
    raw = data_copy / "MNIST" / "raw"
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\0" * 10)
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz is missing \(and t10k-labels-idx1-ubyte is "
                                        r"corrupt\).*git checkout data/MNIST/raw"):
        ensure_mnist_files(data_copy)


def flip(data: bytes, offset: int) -> bytes:
    damaged = bytearray(data)
    damaged[offset] ^= 0xFF
    return bytes(damaged)


# Where a flipped byte lands in a gzip file (RFC 1952): the magic number, the flags, the deflate stream
# (start, middle, end), the CRC-32 and the length in the trailer. A flip in the header's time stamp or file
# name changes nothing that is checked, and the content is still right (the next test).
OFFSETS = {"magic": 0, "flags": 3, "stream start": 40, "stream 1/3": 1 / 3, "stream 2/3": 2 / 3,
           "last stream byte": -9, "crc": -7, "length": -2}


@pytest.mark.parametrize("name", list(MNIST_FILES))
def test_an_archive_with_a_flipped_byte_is_a_data_error_naming_it(name, tmp_path):
    """Each archive damaged at each offset, cut short or emptied: a DataError naming it, no file left behind."""
    gz = tmp_path / f"{name}.gz"
    original = (DEFAULT_ROOT / "MNIST" / "raw" / gz.name).read_bytes()
    damages = {label: flip(original, int(at * len(original)) if isinstance(at, float) else at)
               for label, at in OFFSETS.items()}
    damages["cut in half"] = original[:len(original) // 2]
    damages["empty"] = b""
    for label, damaged in damages.items():
        gz.write_bytes(damaged)
        with pytest.raises(DataError, match=rf"MNIST archive {gz} is damaged.*git checkout data/MNIST/raw"):
            decompress(gz)
        assert [p.name for p in tmp_path.iterdir()] == [gz.name], label  # no decompressed or temporary file


def test_a_flipped_byte_in_the_header_time_stamp_changes_nothing_checked(tmp_path):
    name = "t10k-labels-idx1-ubyte"
    original = DEFAULT_ROOT / "MNIST" / "raw" / f"{name}.gz"
    (tmp_path / f"{name}.gz").write_bytes(flip(original.read_bytes(), 5))
    with gzip.open(original) as f:
        assert decompress(tmp_path / f"{name}.gz").read_bytes() == f.read()


def test_decompressed_files_get_the_usual_permissions(data_copy):
    """0666 less the umask (0644 with the usual 022), not the temporary file's 0600."""
    import os

    old = os.umask(0o022)
    try:
        ensure_mnist_files(data_copy)
    finally:
        os.umask(old)
    for name in MNIST_FILES:
        assert (data_copy / "MNIST" / "raw" / name).stat().st_mode & 0o777 == 0o644


def test_a_data_folder_refusing_the_write_is_named_not_taken_for_damage(data_copy, monkeypatch):
    """Decompression writes beside the archives; a read-only folder (which root never sees) is named as such."""
    import experiments.data

    def refuse(path, write):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(experiments.data, "write_atomically", refuse)
    raw = data_copy / "MNIST" / "raw"
    with pytest.raises(DataError, match=f"cannot write the decompressed MNIST file {raw}/.*Permission denied.*"
                                        f"make {raw} writable"):
        ensure_mnist_files(data_copy)
