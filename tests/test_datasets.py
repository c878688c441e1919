"""Tests for workbench.datasets: image/mask reading, MVTec-layout folders, tables."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from workbench.datasets import FolderDataset, Sample, Table, image_shape, load_table, read_image, read_mask
from workbench.errors import DataError

SHARED_DATASETS = (Path(__file__).parents[1] / ".." / "shared" / "datasets").resolve()
H, W = 24, 40  # non-square on purpose


def _gray(h=H, w=W, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def _rgb(h=H, w=W, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path: Path, arr: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kwargs)
    return path


def _mask(h=H, w=W, box=(4, 10, 8, 20)) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    r0, r1, c0, c1 = box
    m[r0:r1, c0:c1] = 255
    return m


def _make_dataset(root: Path, n_train=3, test=None, masks=True, ext=".png", shape=(H, W)) -> Path:
    """A small MVTec-layout folder; ``test`` maps kind -> number of images."""
    test = {"good": 2, "scratch": 2} if test is None else test
    h, w = shape
    for i in range(n_train):
        _save(root / "train" / "good" / f"{i:03d}{ext}", _gray(h, w, i))
    for kind, n in test.items():
        for i in range(n):
            _save(root / "test" / kind / f"{i:03d}{ext}", _gray(h, w, 100 + i))
            if kind != "good" and masks:
                _save(root / "ground_truth" / kind / f"{i:03d}_mask.png", _mask(h, w))
    return root


# --------------------------------------------------------------------------- read_image


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".tiff", ".PNG", ".Tif"])
def test_read_image_lossless_formats_round_trip(tmp_path, ext):
    for arr in (_gray(), _rgb()):
        path = _save(tmp_path / f"img_{arr.ndim}{ext}", arr)
        out = read_image(path)
        assert out.dtype == np.uint8
        assert out.shape == arr.shape
        np.testing.assert_array_equal(out, arr)
        assert image_shape(path) == arr.shape


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".JPG"])
def test_read_image_jpeg_gray_and_colour(tmp_path, ext):
    smooth = np.tile(np.linspace(0, 255, W, dtype=np.uint8), (H, 1))
    gray = _save(tmp_path / f"g{ext}", smooth, quality=95)
    colour = _save(tmp_path / f"c{ext}", np.stack([smooth, smooth[::-1], smooth], -1), quality=95)
    g, c = read_image(gray), read_image(colour)
    assert g.shape == (H, W) and g.dtype == np.uint8
    assert c.shape == (H, W, 3) and c.dtype == np.uint8
    assert np.abs(g.astype(int) - smooth).max() < 12


def test_read_image_drops_alpha_and_converts_modes(tmp_path):
    rgba = np.dstack([_rgb(), np.full((H, W), 7, np.uint8)])
    assert read_image(_save(tmp_path / "rgba.png", rgba)).shape == (H, W, 3)
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgba[..., :3])
    la = Image.fromarray(_gray()).convert("LA")
    la.save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), _gray())
    cmyk = Image.fromarray(_rgb()).convert("CMYK")
    cmyk.save(tmp_path / "cmyk.jpg")
    assert read_image(tmp_path / "cmyk.jpg").shape == (H, W, 3)
    one = Image.fromarray(_gray() > 127).convert("1")
    one.save(tmp_path / "one.png")
    assert set(np.unique(read_image(tmp_path / "one.png"))) <= {0, 255}


def test_read_image_palette_gray_or_colour(tmp_path):
    gray_p = Image.fromarray(_gray()).convert("P")  # Pillow's "P" from "L" keeps a gray palette
    gray_p.save(tmp_path / "gp.png")
    assert read_image(tmp_path / "gp.png").shape == (H, W)
    assert image_shape(tmp_path / "gp.png") == (H, W)
    colour_p = Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    colour_p.save(tmp_path / "cp.png")
    out = read_image(tmp_path / "cp.png")
    assert out.shape == (H, W, 3)
    np.testing.assert_array_equal(out, np.asarray(colour_p.convert("RGB")))


def test_read_image_16bit_tiff_and_png_scaled_by_type_range(tmp_path):
    arr = np.array([[0, 257, 32768, 65535]], dtype=np.uint16).repeat(3, 0)
    tifffile.imwrite(tmp_path / "u16.tif", arr)
    out = read_image(tmp_path / "u16.tif")
    assert out.dtype == np.uint8 and out.shape == (3, 4)
    np.testing.assert_array_equal(out[0], [0, 1, 128, 255])
    Image.fromarray(arr).save(tmp_path / "u16.png")
    np.testing.assert_array_equal(read_image(tmp_path / "u16.png")[0], [0, 1, 128, 255])
    rgb16 = np.stack([arr, arr, arr[:, ::-1]], -1)
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    out = read_image(tmp_path / "rgb16.tif")
    assert out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out[0, :, 2], [255, 128, 1, 0])
    assert image_shape(tmp_path / "rgb16.tif") == (3, 4, 3)
    i16 = np.array([[-32768, 0, 32767]], dtype=np.int16)
    tifffile.imwrite(tmp_path / "i16.tif", i16)
    np.testing.assert_array_equal(read_image(tmp_path / "i16.tif")[0], [0, 128, 255])


def test_read_image_float_tiff(tmp_path):
    arr = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    tifffile.imwrite(tmp_path / "f.tif", arr)
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif")[0], [0, 128, 255])
    tifffile.imwrite(tmp_path / "f64rgb.tif", np.full((2, 3, 3), 0.25), photometric="rgb")
    assert read_image(tmp_path / "f64rgb.tif").shape == (2, 3, 3)
    tifffile.imwrite(tmp_path / "big.tif", np.array([[0.0, 200.0]], dtype=np.float32))
    with pytest.warns(UserWarning, match="big.tif"):
        np.testing.assert_array_equal(read_image(tmp_path / "big.tif")[0], [0, 255])
    tifffile.imwrite(tmp_path / "nan.tif", np.array([[np.nan, 0.2]], dtype=np.float32))
    with pytest.raises(DataError, match="nan.tif.*NaN"):
        read_image(tmp_path / "nan.tif")


def test_read_image_corrupt_truncated_empty_missing(tmp_path):
    good = _save(tmp_path / "good.png", _rgb(64, 80))
    data = good.read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.jpg").write_bytes(b"this is not an image at all" * 10)
    (tmp_path / "empty.bmp").write_bytes(b"")
    jpg = _save(tmp_path / "ok.jpg", _rgb(64, 80))
    (tmp_path / "trunc.jpg").write_bytes(jpg.read_bytes()[:300])
    for name, reason in [
        ("trunc.png", "truncated|damaged"),
        ("garbage.jpg", "not a recognised image format"),
        ("empty.bmp", "empty"),
        ("trunc.jpg", "truncated|damaged"),
        ("missing.png", "does not exist"),
    ]:
        with pytest.raises(DataError, match=rf"{name}.*({reason})") as info:
            read_image(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)
    (tmp_path / "anim.gif").write_bytes(b"GIF89a")
    with pytest.raises(DataError, match=r"anim.gif.*\.gif.*expected one of"):
        read_image(tmp_path / "anim.gif")


# --------------------------------------------------------------------------- read_mask


def test_read_mask_binary_values(tmp_path):
    m = _mask()
    out = read_mask(_save(tmp_path / "a.png", m), expected_shape=(H, W, 3))
    assert out.dtype == np.bool_ and out.shape == (H, W)
    np.testing.assert_array_equal(out, m > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(read_mask(_save(tmp_path / "b.png", (m > 0).astype(np.uint8))), m > 0)
        np.testing.assert_array_equal(read_mask(_save(tmp_path / "c.png", np.zeros((H, W), np.uint8))), False)


def test_read_mask_binarises_non_binary_with_warning(tmp_path):
    soft = _mask().copy()
    soft[4, 10] = 128
    soft[5, 10] = 30
    with pytest.warns(UserWarning, match=r"soft.png.*not binary.*127.5"):
        out = read_mask(_save(tmp_path / "soft.png", soft))
    assert out[4, 10] and not out[5, 10] and out.sum() == (_mask() > 0).sum() - 1
    labels = np.zeros((H, W), np.uint8)
    labels[0:3, 0:3] = 1
    labels[10:12, 10:12] = 2
    with pytest.warns(UserWarning, match=r"labels.png.*label map"):
        out = read_mask(_save(tmp_path / "labels.png", labels))
    assert out.sum() == 9 + 4
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[2:5, 2:5, 0] = 255
    assert read_mask(_save(tmp_path / "rgb.png", rgb)).sum() == 9


def test_read_mask_size_mismatch_names_both_files(tmp_path):
    mask = _save(tmp_path / "m_mask.png", _mask(10, 12))
    with pytest.raises(DataError) as info:
        read_mask(mask, expected_shape=(H, W), image_path=tmp_path / "m.png")
    msg = str(info.value)
    assert str(mask) in msg and str(tmp_path / "m.png") in msg and "10x12" in msg and f"{H}x{W}" in msg


# --------------------------------------------------------------------------- FolderDataset


def test_folder_dataset_layout_order_and_samples(tmp_path):
    root = _make_dataset(tmp_path / "ds", n_train=3, test={"good": 2, "scratch": 2, "crack": 1})
    ds = FolderDataset(root)
    assert ds.root == root.resolve()
    assert [s.stem for s in ds.train] == ["000", "001", "002"]
    assert ds.kinds == ["good", "crack", "scratch"]
    assert [(s.kind, s.stem) for s in ds.test] == [
        ("good", "000"), ("good", "001"), ("crack", "000"), ("scratch", "000"), ("scratch", "001")]
    assert ds.has_masks
    s = ds.test[-1]
    assert isinstance(s, Sample) and s.split == "test" and s.label == 1
    assert s.mask_path == root.resolve() / "ground_truth" / "scratch" / "001_mask.png"
    assert s.image().shape == (H, W)
    m = s.mask()
    assert m.dtype == np.bool_ and m.shape == (H, W) and m.sum() == 72
    good = ds.test[0]
    assert good.label == 0 and good.mask_path is None
    assert good.mask().shape == (H, W) and not good.mask().any()
    with pytest.raises(AttributeError):
        good.kind = "x"  # frozen
    summary = ds.summary()
    assert summary["train"] == {"good": 3}
    assert summary["test"] == {"good": 2, "crack": 1, "scratch": 2}
    assert summary["masks"] == {"crack": 1, "scratch": 2}
    assert summary["image_sizes"] == [{"height": H, "width": W, "count": 8}]
    assert summary["channels"] == {"gray": 8, "colour": 0}
    assert "train=3" in repr(ds) and "scratch=2" in repr(ds)


@pytest.mark.parametrize("ext", [".jpg", ".bmp", ".tif"])
def test_folder_dataset_other_formats_and_colour(tmp_path, ext):
    root = tmp_path / "ds"
    for i in range(2):
        _save(root / "train" / "good" / f"{i}{ext}", _rgb(30, 50, i))
    _save(root / "test" / "dent" / f"0{ext}", _rgb(30, 50, 9))
    _save(root / "ground_truth" / "dent" / "0_mask.png", _mask(30, 50))
    ds = FolderDataset(root)
    assert ds.summary()["channels"] == {"gray": 0, "colour": 3}
    assert ds.test[0].image().shape == (30, 50, 3)
    assert ds.test[0].mask().shape == (30, 50)


def test_kind_without_ground_truth_has_no_masks(tmp_path):
    root = _make_dataset(tmp_path / "ds", test={"good": 1, "scratch": 2}, masks=False)
    ds = FolderDataset(root)
    assert not ds.has_masks
    assert ds.test[-1].mask() is None
    assert ds.summary()["masks"] == {"scratch": None}


def test_missing_masks_warn_once_per_kind(tmp_path):
    root = _make_dataset(tmp_path / "ds", test={"good": 1, "scratch": 4, "stain": 3})
    (root / "ground_truth" / "scratch" / "001_mask.png").unlink()
    (root / "ground_truth" / "scratch" / "003_mask.png").unlink()
    (root / "ground_truth" / "stain" / "000_mask.png").unlink()
    with pytest.warns(UserWarning) as record:
        ds = FolderDataset(root)
    msgs = [str(w.message) for w in record if "no mask for" in str(w.message)]
    assert len(msgs) == 2
    scratch = next(m for m in msgs if "test/scratch" in m)
    assert "2 of 4" in scratch and "001.png" in scratch and "003.png" in scratch
    by_stem = {(s.kind, s.stem): s for s in ds.test}
    assert by_stem["scratch", "001"].mask() is None
    assert by_stem["scratch", "000"].mask() is not None
    assert ds.summary()["masks_missing"] == {"scratch": 2, "stain": 1}


def test_missing_root_and_train_good(tmp_path):
    with pytest.raises(DataError, match=r"(?s)nope.*does not exist.*train/good"):
        FolderDataset(tmp_path / "nope")
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match=r"(?s)flat.*train/good.*test/<kind>"):
        FolderDataset(tmp_path / "flat")
    _make_dataset(tmp_path / "mvtec" / "bottle")
    with pytest.raises(DataError, match=r"(?s)categories \(bottle\)"):
        FolderDataset(tmp_path / "mvtec")


def test_empty_train_good(tmp_path):
    root = tmp_path / "ds"
    (root / "train" / "good").mkdir(parents=True)
    (root / "train" / "good" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"train/good holds no images"):
        FolderDataset(root)


def test_mask_without_image_names_mask_and_expected_image(tmp_path):
    root = _make_dataset(tmp_path / "ds")
    orphan = _save(root / "ground_truth" / "scratch" / "007_mask.png", _mask())
    with pytest.raises(DataError) as info:
        FolderDataset(root)
    msg = str(info.value)
    assert str(orphan.resolve()) in msg and str((root / "test" / "scratch" / "007.png").resolve()) in msg
    # A ground_truth kind with no test folder at all.
    orphan.unlink()
    stray = _save(root / "ground_truth" / "crack" / "000_mask.png", _mask())
    with pytest.raises(DataError, match=r"000_mask.png has no image.*test/crack/000.png"):
        FolderDataset(root)
    stray.unlink()
    FolderDataset(root)


def test_mask_size_mismatch_names_both_files_and_sizes(tmp_path):
    root = _make_dataset(tmp_path / "ds")
    bad = _save(root / "ground_truth" / "scratch" / "001_mask.png", _mask(W, H))
    with pytest.raises(DataError) as info:
        FolderDataset(root)
    msg = str(info.value)
    assert str(bad.resolve()) in msg
    assert str((root / "test" / "scratch" / "001.png").resolve()) in msg
    assert f"{W}x{H}" in msg and f"{H}x{W}" in msg


def test_unreadable_image_header_named(tmp_path):
    root = _make_dataset(tmp_path / "ds")
    bad = root / "test" / "good" / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 7)
    with pytest.raises(DataError, match=r"bad\.png"):
        FolderDataset(root)
    bad.write_bytes(b"")
    with pytest.raises(DataError, match=r"bad\.png.*empty"):
        FolderDataset(root)


def test_unsupported_files_warn_hidden_and_text_silent(tmp_path):
    root = _make_dataset(tmp_path / "ds")
    (root / "train" / "good" / ".DS_Store").write_bytes(b"x")
    (root / "train" / "good" / "README.txt").write_text("x")
    (root / "test" / "good" / "notes.json").write_text("{}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = FolderDataset(root)
    assert len(ds.train) == 3
    (root / "train" / "good" / "clip.gif").write_bytes(b"GIF89a")
    (root / "train" / "good" / "data.npy").write_bytes(b"x")
    with pytest.warns(UserWarning, match=r"ignored 2 entries.*clip.gif"):
        ds = FolderDataset(root)
    assert len(ds.train) == 3


def test_duplicate_stems_rejected(tmp_path):
    root = _make_dataset(tmp_path / "ds")
    _save(root / "test" / "scratch" / "000.bmp", _gray())
    with pytest.raises(DataError, match=r"two images with the stem '000'.*000.bmp.*000.png"):
        FolderDataset(root)


def test_ground_truth_good_ignored_with_warning(tmp_path):
    root = _make_dataset(tmp_path / "ds")
    _save(root / "ground_truth" / "good" / "000_mask.png", _mask())
    with pytest.warns(UserWarning, match=r"ground_truth/good was ignored"):
        ds = FolderDataset(root)
    assert not ds.test[0].mask().any()


def test_non_square_rgb_and_gray_mixed_sizes(tmp_path):
    root = tmp_path / "ds"
    _save(root / "train" / "good" / "a.png", _gray(20, 30))
    _save(root / "train" / "good" / "b.png", _rgb(30, 20))
    ds = FolderDataset(root)
    assert ds.test == [] and ds.kinds == [] and not ds.has_masks
    s = ds.summary()
    assert s["channels"] == {"gray": 1, "colour": 1}
    assert {(d["height"], d["width"]) for d in s["image_sizes"]} == {(20, 30), (30, 20)}


# --------------------------------------------------------------------------- real data


def _real(name: str) -> Path:
    path = SHARED_DATASETS / name
    if not path.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"real dataset {path} is missing, and CI=true requires it")
        pytest.skip(f"real dataset {path} not present (outside CI); see ../shared/datasets/README.md")
    return path


def test_real_bsdata_pitting():
    ds = FolderDataset(_real("images/bsdata_pitting"))
    assert len(ds.train) == 538
    assert len(ds.test) == 317
    assert ds.kinds == ["good", "pitting"]
    summary = ds.summary()
    assert summary["test"] == {"good": 150, "pitting": 167}
    assert summary["masks"] == {"pitting": 167}
    assert sum(s.mask_path is not None for s in ds.test) == 167
    assert summary["image_sizes"] == [{"height": 460, "width": 1130, "count": 855}]
    sample = next(s for s in ds.test if s.kind == "pitting")
    img, mask = sample.image(), sample.mask()
    assert img.shape == (460, 1130, 3) and img.dtype == np.uint8
    assert mask.shape == (460, 1130) and mask.any()


def test_real_adbench_tables():
    folder = _real("tabular/adbench_classical")
    table = load_table(folder / "4_breastw.npz")
    assert table.X.shape == (683, 9) and table.X.dtype == np.float64
    assert int(table.y.sum()) == 239


# --------------------------------------------------------------------------- tables


def test_load_table_npz(tmp_path):
    X = np.arange(12, dtype=np.int32).reshape(4, 3)
    np.savez(tmp_path / "t.npz", X=X, y=np.array([0, 1, 0, 0]))
    t = load_table(tmp_path / "t.npz")
    assert isinstance(t, Table) and t.X.dtype == np.float64 and t.X.shape == (4, 3)
    assert t.y.tolist() == [0, 1, 0, 0] and t.y.dtype == np.int64
    assert t.feature_names == ["x0", "x1", "x2"] and t.path == tmp_path / "t.npz"
    np.savez(tmp_path / "nolabel.npz", X=X)
    assert load_table(tmp_path / "nolabel.npz").y is None
    np.savez(tmp_path / "wrong.npz", data=X, labels=np.zeros(4))
    with pytest.raises(DataError, match=r"wrong.npz.*\['data', 'labels'\].*'X'"):
        load_table(tmp_path / "wrong.npz")
    np.savez(tmp_path / "oned.npz", X=np.zeros(4))
    with pytest.raises(DataError, match=r"oned.npz.*\(4,\).*\(n, d\)"):
        load_table(tmp_path / "oned.npz")


def test_load_table_csv_and_parquet(tmp_path):
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4, 5, 6], "y": [0, 0, 1]})
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet")
    for name in ("t.csv", "t.parquet"):
        t = load_table(tmp_path / name)
        assert t.feature_names == ["a", "b"]
        np.testing.assert_array_equal(t.X, [[1, 4], [2, 5], [3, 6]])
        assert t.y.tolist() == [0, 0, 1]
    df.rename(columns={"y": "label"}).to_csv(tmp_path / "l.csv", index=False)
    t = load_table(tmp_path / "l.csv", label_column="label")
    assert t.y.tolist() == [0, 0, 1] and t.feature_names == ["a", "b"]
    with pytest.warns(UserWarning, match=r"no label column 'y'.*'label'"):
        t = load_table(tmp_path / "l.csv")
    assert t.y is None and t.feature_names == ["a", "b", "label"]
    df[["a", "b"]].to_csv(tmp_path / "nolabel.csv", index=False)
    assert load_table(tmp_path / "nolabel.csv").y is None


def test_load_table_non_numeric_columns_named(tmp_path):
    df = pd.DataFrame({"a": [1.0, 2.0], "colour": ["red", "blue"], "when": pd.to_datetime(["2020-01-01"] * 2), "y": [0, 1]})
    df.to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"t.parquet has 2 non-numeric columns: 'colour'.*'when'.*Drop these columns or encode"):
        load_table(tmp_path / "t.parquet")


def test_load_table_nan_inf_reported_with_row_and_column(tmp_path):
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [1.0, 2.0, np.nan, np.inf], "y": [0, 0, 1, 0]})
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"t.csv: X has 2 .* the first is at row 2 \(line 4 of the file\), column 'b'"):
        load_table(tmp_path / "t.csv")
    X = np.ones((3, 2))
    X[1, 0] = np.inf
    np.savez(tmp_path / "t.npz", X=X)
    with pytest.raises(DataError, match=r"t.npz: X has 1 .* row 1, column 'x0'"):
        load_table(tmp_path / "t.npz")


def test_load_table_labels_must_be_binary(tmp_path):
    np.savez(tmp_path / "t.npz", X=np.ones((3, 2)), y=np.array([0, 1, 2]))
    with pytest.raises(DataError, match=r"t.npz.*must be 0 \(normal\) or 1 \(anomaly\); found also 2"):
        load_table(tmp_path / "t.npz")
    pd.DataFrame({"a": [1, 2], "y": ["normal", "anomaly"]}).to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(DataError, match=r"s.csv.*text.*anomaly"):
        load_table(tmp_path / "s.csv")
    pd.DataFrame({"a": [1, 2], "y": [1.0, None]}).to_csv(tmp_path / "n.csv", index=False)
    with pytest.raises(DataError, match=r"n.csv.*missing.*row 1"):
        load_table(tmp_path / "n.csv")
    pd.DataFrame({"a": [1, 2], "y": [True, False]}).to_parquet(tmp_path / "b.parquet")
    assert load_table(tmp_path / "b.parquet").y.tolist() == [1, 0]


def test_load_table_bad_files(tmp_path):
    with pytest.raises(DataError, match=r"missing.csv does not exist"):
        load_table(tmp_path / "missing.csv")
    (tmp_path / "t.xlsx").write_bytes(b"x")
    with pytest.raises(DataError, match=r"t.xlsx.*\.npz, \.csv, \.parquet"):
        load_table(tmp_path / "t.xlsx")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"bad.parquet"):
        load_table(tmp_path / "bad.parquet")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"bad.npz"):
        load_table(tmp_path / "bad.npz")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty.csv is empty"):
        load_table(tmp_path / "empty.csv")
    pd.DataFrame({"y": [0, 1]}).to_csv(tmp_path / "only.csv", index=False)
    with pytest.raises(DataError, match=r"only.csv has no feature columns"):
        load_table(tmp_path / "only.csv")
