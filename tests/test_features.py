import numpy as np
import pytest
import skimage.data
import torch

from workbench.features import (
    FeatureExtractor,
    canonical_backbone,
    imagenet_preprocess,
    load_backbone,
    to_tensor,
)
from workbench.errors import DataError, WorkbenchError


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet_lite0")


def _top1(model, image, crop):
    with torch.inference_mode():
        p = model.classify(imagenet_preprocess(image, crop)).softmax(-1)[0]
    return int(p.argmax()), float(p.max())


# native input sizes; Lite1 is the least confident of the three on coffee (0.48 measured,
# runner-up 925 consomme), so the bound on p is per model.
@pytest.mark.parametrize("name, crop, min_p", [
    ("efficientnet_lite0", 224, 0.9), ("efficientnet_lite1", 240, 0.4), ("efficientnet_lite2", 260, 0.85)])
def test_pretrained_classifier_recognises_cat_and_espresso(name, crop, min_p):
    model = load_backbone(name)
    cls, _ = _top1(model, skimage.data.chelsea(), crop)
    assert 281 <= cls <= 285, f"{name}: chelsea classified as {cls}"
    cls, p = _top1(model, skimage.data.coffee(), crop)
    assert cls == 967 and p > min_p, f"{name}: coffee classified as {cls} with p={p:.3f}"


def test_stage_shapes_lite0_256(lite0):
    with torch.inference_mode():
        out = lite0(torch.zeros(1, 3, 256, 256), stages=(4, 8, 16, 32))
    assert {s: tuple(t.shape[1:]) for s, t in out.items()} == {
        4: (24, 64, 64), 8: (40, 32, 32), 16: (112, 16, 16), 32: (320, 8, 8)}


def test_non_square_sizes_give_ceil_division(lite0):
    with torch.inference_mode():
        out = lite0(torch.zeros(2, 3, 230, 311), stages=(4, 8, 16, 32))
    for s, t in out.items():
        assert tuple(t.shape) == (2, lite0.stage_channels[s], -(-230 // s), -(-311 // s))


def test_only_requested_stages_are_returned(lite0):
    with torch.inference_mode():
        out = lite0(torch.zeros(1, 3, 64, 64), stages=(16,))
    assert list(out) == [16]
    with pytest.raises(ValueError, match="stage"):
        lite0(torch.zeros(1, 3, 64, 64), stages=(2,))


def test_backbone_aliases_and_unknown_name():
    assert canonical_backbone("lite1") == "efficientnet_lite1"
    assert canonical_backbone("EfficientNet-Lite2") == "efficientnet_lite2"
    with pytest.raises(WorkbenchError, match="unknown backbone"):
        canonical_backbone("resnet18")


def test_weights_load_strictly_with_weights_only(monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    from workbench.features import _efficientnet

    _efficientnet._load_state.cache_clear()
    monkeypatch.setattr(torch, "load", spy)
    model = load_backbone("lite0")
    assert calls == [True]
    # strict: every key of the file is a parameter or buffer of the model and vice versa
    assert set(model.state_dict()) == set(_efficientnet._load_state("efficientnet_lite0"))


def test_to_tensor_handles_gray_rgb_rgba_uint8_and_float():
    rgb = skimage.data.astronaut()[:50, :70]
    gray = rgb.mean(axis=2).astype(np.uint8)
    t_rgb = to_tensor(rgb)
    assert t_rgb.shape == (3, 50, 70)
    assert float(t_rgb.min()) >= -1 and float(t_rgb.max()) <= 1
    t_float = to_tensor(rgb.astype(np.float32) / 255)
    assert torch.allclose(t_rgb, t_float, atol=1e-6)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    assert torch.equal(to_tensor(rgba), t_rgb)
    t_gray = to_tensor(gray)
    assert torch.equal(t_gray[0], t_gray[2])
    assert to_tensor(gray, size=(32, 48)).shape == (3, 32, 48)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        to_tensor(rgb.astype(np.float32))
    with pytest.raises(DataError, match="shape"):
        to_tensor(np.zeros((2, 3, 4, 5)))


def test_uint8_images_resized_as_uint8_match_the_float_resize_within_a_grey_level():
    import torch.nn.functional as F

    from workbench.features._extractor import _as_hw3_float

    rgb = skimage.data.astronaut()[:301, :257]
    for image in (rgb, rgb[..., 0], rgb[..., :1], np.dstack([rgb, rgb[..., :1]])):
        for size in ((64, 48), (400, 300)):  # down- and upscaling
            fast = to_tensor(image, size)
            ref = F.interpolate(_as_hw3_float(image)[None], size=size, mode="bilinear",
                                antialias=True, align_corners=False)[0] * 2 - 1
            assert fast.shape == (3, *size) and fast.dtype == torch.float32
            assert float((fast - ref).abs().max()) <= 1.0 / 127.5 + 1e-6
            assert float((fast - ref).abs().mean()) < 0.5 / 127.5
    gray = to_tensor(rgb[..., 0], (64, 48))
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[0], gray[2])


def _write_png(path, array):
    from PIL import Image

    Image.fromarray(array).save(path)
    return path


def test_extractor_matches_direct_forward_and_batches(tmp_path, lite0):
    imgs = [skimage.data.brick()[i * 40:i * 40 + 96, :128] for i in range(3)]
    fx = FeatureExtractor("lite0", stages=(8, 16), batch_size=2, cache=False)
    feats = fx.transform(imgs)
    assert feats[8].shape == (3, 40, 12, 16) and feats[16].shape == (3, 112, 6, 8)
    with torch.inference_mode():
        direct = lite0(to_tensor(imgs[1]).unsqueeze(0), stages=(8, 16))
    # the extractor folds BatchNorm into the convolutions: equal up to float rounding
    np.testing.assert_allclose(feats[8][1], direct[8][0].numpy(), rtol=1e-3, atol=1e-3)
    # one image alone gives the same features as inside a batch
    alone = fx.transform([imgs[2]])
    np.testing.assert_allclose(alone[16][0], feats[16][2], rtol=1e-4, atol=1e-5)


def test_extractor_mixed_sizes(tmp_path):
    a = skimage.data.camera()[:64, :96]
    b = skimage.data.coffee()[:80, :80]
    fx = FeatureExtractor("lite0", stages=(8,), cache=False)
    each = fx.transform_each([a, b])
    assert each[0][8].shape == (40, 8, 12) and each[1][8].shape == (40, 10, 10)
    with pytest.raises(DataError, match="image_size"):
        fx.transform([a, b])
    fixed = FeatureExtractor("lite0", stages=(8,), image_size=(64, 64), cache=False).transform([a, b])
    assert fixed[8].shape == (2, 40, 8, 8)


def test_images_read_ahead_keep_their_order_and_a_bad_file_stops_at_its_turn(tmp_path):
    paths = [_write_png(tmp_path / f"img{i}.png", skimage.data.gravel()[i * 40:i * 40 + 64, :96])
             for i in range(5)]
    bad = tmp_path / "img2.png"
    bad.write_bytes(b"this is not a png")
    fx = FeatureExtractor("lite0", stages=(8,), batch_size=1, cache=False)
    seen = []
    with pytest.raises(DataError, match="img2.png"):
        for idx, _ in fx.iter_batches(paths):
            seen.extend(idx)
    assert seen == [0, 1]  # the images before the bad one came out, in order; none after it
    good = [p for p in paths if p != bad]
    each = fx.transform_each(good)
    direct = [fx.transform([p])[8][0] for p in good]
    for a, b in zip(each, direct):
        assert np.array_equal(a[8], b)


def test_cache_returns_identical_arrays_and_survives_damage(tmp_path):
    paths = [_write_png(tmp_path / f"img{i}.png", skimage.data.gravel()[i * 50:i * 50 + 120, :150])
             for i in range(3)]
    cache = tmp_path / "cache"
    fx = FeatureExtractor("lite0", stages=(8, 16), image_size=(96, 128), cache_dir=cache)
    first = fx.transform(paths)
    assert fx.cache_misses == 3 and fx.cache_hits == 0
    entries = sorted(cache.rglob("*.npz"))
    assert len(entries) == 3

    fx2 = FeatureExtractor("lite0", stages=(8, 16), image_size=(96, 128), cache_dir=cache)
    second = fx2.transform(paths)
    assert fx2.cache_hits == 3 and fx2.cache_misses == 0
    for s in (8, 16):
        assert np.array_equal(first[s], second[s])

    # truncate one entry and write garbage into another: both are recomputed, results identical
    data = entries[0].read_bytes()
    entries[0].write_bytes(data[: len(data) // 2])
    entries[1].write_bytes(b"not an npz file")
    fx3 = FeatureExtractor("lite0", stages=(8, 16), image_size=(96, 128), cache_dir=cache)
    third = fx3.transform(paths)
    assert fx3.cache_misses == 2 and fx3.cache_hits == 1
    for s in (8, 16):
        assert np.array_equal(first[s], third[s])
    # and the damaged entries were rewritten as valid ones
    fx4 = FeatureExtractor("lite0", stages=(8, 16), image_size=(96, 128), cache_dir=cache)
    fx4.transform(paths)
    assert fx4.cache_hits == 3


def test_cache_key_depends_on_content_size_stages_and_backbone(tmp_path):
    p = _write_png(tmp_path / "a.png", skimage.data.grass()[:64, :64])
    cache = tmp_path / "cache"
    FeatureExtractor("lite0", stages=(8,), image_size=(64, 64), cache_dir=cache).transform([p])
    for kwargs in ({"stages": (16,), "image_size": (64, 64)}, {"stages": (8,), "image_size": (96, 64)}):
        fx = FeatureExtractor("lite0", cache_dir=cache, **kwargs)
        fx.transform([p])
        assert fx.cache_misses == 1
    fx = FeatureExtractor("lite1", stages=(8,), image_size=(64, 64), cache_dir=cache)
    fx.transform([p])
    assert fx.cache_misses == 1
    _write_png(p, skimage.data.grass()[64:128, :64])  # same name, new content
    fx = FeatureExtractor("lite0", stages=(8,), image_size=(64, 64), cache_dir=cache)
    fx.transform([p])
    assert fx.cache_misses == 1


def test_cache_default_location_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "envcache"))
    p = _write_png(tmp_path / "a.png", skimage.data.grass()[:64, :64])
    FeatureExtractor("lite0", stages=(8,), image_size=(64, 64)).transform([p])
    assert list((tmp_path / "envcache").rglob("*.npz"))


def test_threads_are_restored():
    before = torch.get_num_threads()
    FeatureExtractor("lite0", stages=(8,), threads=2, cache=False).transform([np.zeros((32, 32), np.uint8)])
    assert torch.get_num_threads() == before


def test_batchnorm_folding_keeps_outputs(lite0):
    from workbench.features._efficientnet import fuse_batchnorm

    x = to_tensor(skimage.data.coffee()[:128, :160]).unsqueeze(0)
    fused = fuse_batchnorm(lite0)
    with torch.inference_mode():
        a, b = lite0(x, stages=(4, 16)), fused(x, stages=(4, 16))
        logits_a, logits_b = lite0.classify(x), fused.classify(x)
    for s in (4, 16):
        assert torch.allclose(a[s], b[s], rtol=1e-3, atol=1e-3)
    assert torch.allclose(logits_a, logits_b, rtol=1e-3, atol=1e-3)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in lite0.modules())  # original untouched


def test_tiled_features_agree_with_untiled():
    # 2x3 tiles of 256 with a 64 px margin on a 420x700 image (padded to 448x704)
    image = np.concatenate([skimage.data.astronaut()[:420], skimage.data.chelsea()[:, :188][np.arange(420) % 300]], axis=1)
    assert image.shape[:2] == (420, 700)
    untiled = FeatureExtractor("lite0", stages=(8, 16), cache=False).transform([image])
    tiled_fx = FeatureExtractor("lite0", stages=(8, 16), tile=(256, 256), tile_overlap=64, cache=False)
    tiled = tiled_fx.transform([image])
    for s in (8, 16):
        assert tiled[s].shape == untiled[s].shape == (1, tiled_fx.channels[s], -(-420 // s), -(-700 // s))
    # stride 8: the 64 px margin covers the receptive field that matters: equal to rounding
    np.testing.assert_allclose(tiled[8], untiled[8], atol=1e-3)
    # stride 16: differences stay near tile borders and small on average
    diff = np.abs(tiled[16] - untiled[16])
    assert diff.mean() < 0.03 * np.abs(untiled[16]).mean()


def test_tile_arguments_are_checked():
    with pytest.raises(ValueError, match="multiples of 32"):
        FeatureExtractor("lite0", tile=(100, 256))
    with pytest.raises(ValueError, match="tile_overlap"):
        FeatureExtractor("lite0", tile=(256, 256), tile_overlap=128)
