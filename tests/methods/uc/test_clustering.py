import numpy as np
import pytest

from uc_datasets.methods.uc.clustering import assign, kmeans, target_permutation


def _blobs(n_per=20, k=4, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, (k, d))
    return np.concatenate([c + rng.normal(0, 0.5, (n_per, d)) for c in centres]).astype(np.float32)


def test_kmeans_is_seeded_and_labels_are_nearest_centres():
    x = _blobs()
    c1, l1 = kmeans(x, 4, seed=3)
    c2, l2 = kmeans(x, 4, seed=3)
    assert np.array_equal(c1, c2) and np.array_equal(l1, l2)
    assert sorted(np.bincount(l1).tolist()) == [20, 20, 20, 20]
    assert np.array_equal(l1, assign(x, c1))


def test_minibatch_kmeans_for_large_n(caplog):
    x = _blobs(n_per=50)
    with caplog.at_level("INFO"):
        centres, labels = kmeans(x, 4, seed=0, minibatch_threshold=100)
    assert "MiniBatchKMeans" in caplog.text
    assert sorted(np.bincount(labels).tolist()) == [50, 50, 50, 50]


def test_kmeans_errors():
    with pytest.raises(ValueError, match="at least 2"):
        kmeans(_blobs(), 1)
    with pytest.raises(ValueError, match="Cannot make 10 clusters from 5"):
        kmeans(_blobs()[:5], 10)


def test_assign_exact():
    assert assign(np.array([[0.0, 0.0], [5.0, 5.1], [9.0, 9.0]]), np.array([[0.0, 0.0], [10.0, 10.0]])).tolist() == [
        0, 1, 1]
    assert assign(np.zeros((0, 2)), np.zeros((2, 2))).shape == (0,)


def test_permutations():
    assert target_permutation(4).tolist() == [1, 2, 3, 0]
    for seed in range(20):
        perm = target_permutation(7, "derangement", seed=seed)
        assert sorted(perm.tolist()) == list(range(7)) and not (perm == np.arange(7)).any()
    assert np.array_equal(target_permutation(7, "derangement", seed=1), target_permutation(7, "derangement", seed=1))
    with pytest.raises(ValueError, match="shift"):
        target_permutation(3, "random")
