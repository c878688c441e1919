"""Image detectors (PaDiM, shared Gaussian, PatchCore): localisation, thresholds, files, batches, tiles."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from workbench.datasets import FolderDataset, make_sample
from workbench.detectors import PaDiM, PatchCore, Scores, SharedGaussian, load_detector
from workbench.detectors._coreset import greedy_coreset, random_projection
from workbench.errors import DataError, ModelFileError, WorkbenchError

DETECTORS = {"padim": PaDiM, "padim-shared": SharedGaussian, "patchcore": PatchCore}


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory):
    return make_sample(tmp_path_factory.mktemp("sample") / "sample")


@pytest.fixture(scope="session")
def sample(sample_dir):
    return FolderDataset(sample_dir)


@pytest.fixture(scope="session")
def fitted(sample):
    """Each detector fitted once on the sample's normal images (shared by several tests)."""
    return {name: cls(random_state=0).fit(sample) for name, cls in DETECTORS.items()}


@pytest.mark.parametrize("name", list(DETECTORS))
def test_pasted_defects_are_found_and_localised(fitted, sample, name):
    det = fitted[name]
    patches = [s for s in sample.test if s.kind == "patch"]
    scores = det.predict(patches)
    assert isinstance(scores, Scores) and len(scores) == len(patches)
    inside = 0
    for s, amap in zip(patches, scores.anomaly_maps):
        assert amap.dtype == np.float32 and amap.shape == s.mask().shape
        r, c = np.unravel_index(np.argmax(amap), amap.shape)
        inside += bool(s.mask()[r, c])
    # the top pixel of the map lies inside the pasted region for nearly every image
    assert inside >= len(patches) - 2, f"{name}: top pixel inside the mask for {inside}/{len(patches)}"
    good = det.predict([s for s in sample.test if s.kind == "good"])
    assert np.median(scores.image_scores) > np.median(good.image_scores)


def test_image_score_comes_from_a_smoother_map_when_asked(fitted, sample):
    det = fitted["patchcore"]
    assert (det.sigma, det.image_sigma) == (2.0, 16.0)  # PatchCore's defaults
    images = sample.test[::4]
    sharp = det.predict(images)
    params = det.get_params()
    try:
        det.image_sigma = None  # the score is the maximum of the anomaly map itself
        plain = det.predict(images)
        np.testing.assert_allclose(plain.image_scores, [m.max() for m in plain.anomaly_maps], rtol=1e-6)
        det.image_sigma = 32.0
        wide = det.predict(images)
    finally:
        det.image_sigma = params["image_sigma"]
    # maps never depend on image_sigma; smoothing more never raises a maximum
    for a, b in zip(sharp.anomaly_maps, wide.anomaly_maps):
        np.testing.assert_array_equal(a, b)
    assert np.all(wide.image_scores <= plain.image_scores * (1 + 1e-6))
    assert np.all(wide.image_scores < sharp.image_scores) and np.any(sharp.image_scores < plain.image_scores)


def test_thresholds_are_set_on_held_out_normal_images(fitted, sample):
    det = fitted["patchcore"]
    info = det.threshold_info_
    assert info["source"] == "holdout" and info["n_images"] >= 3
    assert det.n_fit_images_ + info["n_images"] == len(sample.train)
    scores = det.predict(sample.test)
    assert scores.image_threshold == det.image_threshold_ and scores.pixel_threshold is not None
    labels = scores.labels()
    assert set(np.unique(labels)) <= {0, 1}
    masks = scores.masks()
    assert all(m.dtype == bool and m.shape == a.shape for m, a in zip(masks, scores.anomaly_maps))
    # the image threshold flags few normal test images and most strong defects
    kinds = np.array([s.kind for s in sample.test])
    assert labels[kinds == "good"].mean() <= 0.25
    assert labels[kinds == "patch"].mean() >= 0.5


def test_validation_set_replaces_the_holdout(sample):
    det = PaDiM(n_features=40).fit(sample.train[:30], validation=sample.train[30:])
    assert det.threshold_info_["source"] == "validation"
    assert det.threshold_info_["n_images"] == len(sample.train) - 30 and det.n_fit_images_ == 30
    few = PaDiM(n_features=40).fit(sample.train[:5])
    assert few.image_threshold_ is None and "validation" in few.threshold_info_["note"]
    assert few.predict(sample.test[:2]).image_threshold is None


@pytest.mark.parametrize("name", list(DETECTORS))
def test_save_load_round_trip_gives_identical_scores(fitted, sample, tmp_path, name):
    det = fitted[name]
    images = sample.test[::7]
    before = det.predict(images)
    path = det.save(tmp_path / f"{name}.pt")
    loaded = load_detector(path)
    assert type(loaded) is type(det)
    assert loaded.settings() == det.settings()
    after = loaded.predict(images)
    np.testing.assert_array_equal(before.image_scores, after.image_scores)
    for a, b in zip(before.anomaly_maps, after.anomaly_maps):
        np.testing.assert_array_equal(a, b)
    assert DETECTORS[name].load(path).name == name


def test_model_file_errors(fitted, tmp_path):
    path = fitted["padim"].save(tmp_path / "padim.pt")
    with pytest.raises(ModelFileError, match="padim"):
        PatchCore.load(path)
    payload = torch.load(path, weights_only=True)
    payload["state_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(ModelFileError, match="state version 99"):
        load_detector(tmp_path / "future.pt")
    payload["format_version"] = 7
    torch.save(payload, tmp_path / "format.pt")
    with pytest.raises(ModelFileError, match="format version 7"):
        load_detector(tmp_path / "format.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="junk.pt"):
        load_detector(tmp_path / "junk.pt")
    with pytest.raises(ModelFileError, match="does not exist"):
        load_detector(tmp_path / "missing.pt")


@pytest.mark.parametrize("name", ["padim", "patchcore"])
def test_scores_do_not_depend_on_the_batch(fitted, sample, name):
    det = fitted[name]
    images = sample.test[:9]
    together = det.predict(images)
    for i in (0, 4, 8):
        alone = det.predict([images[i]])
        np.testing.assert_allclose(alone.image_scores[0], together.image_scores[i], rtol=1e-5)
        np.testing.assert_allclose(alone.anomaly_maps[0], together.anomaly_maps[i], rtol=1e-5, atol=1e-5)
    shuffled = det.predict(images[::-1])
    np.testing.assert_allclose(shuffled.image_scores[::-1], together.image_scores, rtol=1e-5)


def test_arrays_paths_and_samples_give_the_same_scores(fitted, sample):
    det = fitted["padim"]
    s = sample.test[3]
    by_sample = det.predict([s]).image_scores[0]
    by_path = det.predict([str(s.path)]).image_scores[0]
    by_array = det.predict([s.image()]).image_scores[0]
    assert by_sample == by_path == pytest.approx(by_array, rel=1e-6)
    assert det.anomaly_score([s]).shape == (1,)


def test_top_k_image_score_and_smoothing(sample):
    det = PaDiM(n_features=40, score=50, sigma=0, holdout=0).fit(sample.train[:12])
    scores = det.predict(sample.test[:3])
    for sc, amap in zip(scores.image_scores, scores.anomaly_maps):
        top = np.sort(amap.ravel())[-50:]
        assert sc == pytest.approx(top.mean(), rel=1e-5)
        assert sc < amap.max()


def _smooth_and_resize_step_by_step(grid, input_size, out_size, sigma):
    """The map chain run literally on images: upsample, pad + separable Gaussian, resize."""
    import torch.nn.functional as F

    from workbench.detectors._base import _gaussian_kernel

    x = F.interpolate(grid[None, None].double(), size=input_size, mode="bilinear", align_corners=False)
    if sigma:
        k = _gaussian_kernel(sigma).double()
        r = (len(k) - 1) // 2
        ry, rx = min(r, input_size[0] - 1), min(r, input_size[1] - 1)
        x = F.pad(x, (rx, rx, ry, ry), mode="reflect")
        x = F.conv2d(x, k[r - ry:r + ry + 1].view(1, 1, -1, 1))
        x = F.conv2d(x, k[r - rx:r + rx + 1].view(1, 1, 1, -1))
    x = F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)
    return x[0, 0].numpy()


@pytest.mark.parametrize("grid_size, input_size, out_size, sigma", [
    ((39, 96), (312, 768), (460, 1130), 2.0),   # BSData geometry, upscaled output
    ((8, 8), (64, 64), (50, 70), 4.0),          # output smaller than the input, other aspect
    ((3, 5), (20, 36), (200, 10), 8.0),         # kernel wider than the input: truncated reflect
    ((4, 4), (32, 32), (32, 32), 0.0),          # no smoothing
])
def test_map_operator_matrices_equal_the_step_by_step_chain(grid_size, input_size, out_size, sigma):
    from workbench.detectors._base import smooth_and_resize

    grid = torch.rand(grid_size, generator=torch.Generator().manual_seed(1)) * 5
    fast = smooth_and_resize(grid, input_size, out_size, sigma)
    slow = _smooth_and_resize_step_by_step(grid, input_size, out_size, sigma)
    assert fast.shape == tuple(out_size) and fast.dtype == np.float32
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-4)


def test_reweighting_changes_only_image_scores(sample):
    base = PatchCore(bank_size=256, holdout=0).fit(sample.train[:12])
    rew = PatchCore(bank_size=256, holdout=0, reweight=True).fit(sample.train[:12])
    a, b = base.predict(sample.test[:4]), rew.predict(sample.test[:4])
    for x, y in zip(a.anomaly_maps, b.anomaly_maps):
        np.testing.assert_array_equal(x, y)
    factors = b.image_scores / a.image_scores
    assert np.all((factors > 0) & (factors <= 1))


def test_float16_bank_halves_memory_and_keeps_scores_close(sample):
    f32 = PatchCore(bank_size=512, holdout=0).fit(sample.train[:12])
    f16 = PatchCore(bank_size=512, holdout=0, bank_dtype="float16").fit(sample.train[:12])
    assert f16.bank_.dtype == torch.float16 and f16.bank_.nbytes * 2 == f32.bank_.nbytes
    np.testing.assert_allclose(f16.predict(sample.test[:3]).image_scores,
                               f32.predict(sample.test[:3]).image_scores, rtol=2e-2)


def test_input_size_is_chosen_from_the_data_and_non_square_sizes_work(sample):
    det = PaDiM(n_features=40, holdout=0).fit(sample.train[:6])
    assert det.input_size_ == (240, 320)  # small images stay at native size
    s = det.settings()
    assert s["input_size"] == [240, 320] and s["image_size"] == "auto" and s["backbone"] == "efficientnet_lite0"
    big = [np.zeros((920, 2260), np.uint8) + i for i in range(3)]
    from workbench.detectors._base import AUTO_PIXELS, resolve_image_size

    h, w = resolve_image_size([(920, 2260)] * 3, "auto", None)
    assert h * w <= AUTO_PIXELS * 1.05 and abs(w / h - 2260 / 920) < 0.05 and h % 8 == 0 == w % 8
    custom = PaDiM(n_features=40, holdout=0, image_size=(96, 200)).fit(big)
    maps = custom.predict(big[:1]).anomaly_maps
    assert maps[0].shape == (920, 2260)


def test_tiled_maps_agree_with_untiled_maps_at_native_resolution(sample):
    # 2x3 tiles of 256 px (64 px overlap) on 400x600 images built from the sample's texture
    def big(s):
        img = s.image()
        return np.concatenate([np.concatenate([img, img[:, ::-1]], 1)] * 2, 0)[:400, :600]

    train = [big(s) for s in sample.train[:10]]
    test = [big(s) for s in sample.test if s.kind == "patch"][:2]
    tiled = PatchCore(bank_size=512, holdout=0, tile=(256, 256)).fit(train)
    assert tiled.input_size_ == (400, 600)  # tiling keeps the native size
    b = tiled.predict(test)
    tiled.tile = None  # same fitted bank, features of the whole image at once
    a = tiled.predict(test)
    for x, y in zip(a.anomaly_maps, b.anomaly_maps):
        # stride-8 features agree exactly across tiles, stride-16 ones to ~1%: maps agree to
        # 5% of their range everywhere, 1% on average, with the same argmax region
        rng = float(x.max() - x.min())
        assert np.abs(x - y).max() < 0.05 * rng
        assert np.abs(x - y).mean() < 0.01 * rng
        assert np.hypot(*np.subtract(np.unravel_index(x.argmax(), x.shape),
                                     np.unravel_index(y.argmax(), y.shape))) < 16


def test_bad_inputs_give_clear_errors(fitted, sample, tmp_path):
    with pytest.raises(DataError, match="no training images"):
        PaDiM().fit([])
    empty = tmp_path / "empty"
    (empty / "train" / "good").mkdir(parents=True)
    with pytest.raises(DataError, match="train/good"):
        PaDiM().fit(FolderDataset(empty))
    # a gray model given RGB images of another size
    rgb = np.zeros((300, 300, 3), np.uint8)
    with pytest.raises(DataError, match="gray"):
        fitted["padim"].predict([rgb])
    # wrong aspect ratio
    with pytest.raises(DataError, match="aspect ratio"):
        fitted["padim"].predict([np.zeros((300, 100), np.uint8)])
    with pytest.raises(DataError, match="mix gray"):
        PaDiM().fit([np.zeros((64, 64), np.uint8), np.zeros((64, 64, 3), np.uint8)])
    with pytest.raises(WorkbenchError, match="not fitted"):
        PatchCore().predict([rgb])


def test_a_mask_of_the_wrong_size_is_reported_with_both_files(sample_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(sample_dir, copy)
    mask = next((copy / "ground_truth" / "patch").iterdir())
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(mask)
    with pytest.raises(DataError) as err:
        FolderDataset(copy)
    assert mask.name in str(err.value) and "10" in str(err.value)


def _naive_greedy(x, k, dim, seed):
    z = random_projection(x, dim, seed)
    first = int(torch.randint(len(z), (1,), generator=torch.Generator().manual_seed(seed)))
    mind = torch.full((len(z),), float("inf"))
    out, c = [first], first
    for _ in range(k - 1):
        mind = torch.minimum(mind, (z - z[c]).pow(2).sum(1))
        mind[c] = -1
        c = int(torch.argmax(mind))
        out.append(c)
    return torch.tensor(out)


def test_batched_coreset_equals_the_textbook_greedy_sequence():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(40, 152, generator=g) * 3
    x = centres[torch.randint(40, (6000,), generator=g)] + torch.randn(6000, 152, generator=g)
    for cand, batch in ((64, 16), (1024, 128)):
        fast = greedy_coreset(x, 300, projection_dim=48, candidates=cand, batch=batch)
        assert torch.equal(fast, _naive_greedy(x, 300, 48, 0))
    with pytest.raises(ValueError, match="between 1 and"):
        greedy_coreset(x, 0)
