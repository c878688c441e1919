"""Zero- and few-shot image detectors: MuSc-style mutual scoring and the prompt detector.

Everything runs on the generated sample dataset with one torch thread (conftest).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workbench.cli import main
from workbench.datasets import FolderDataset, make_sample
from workbench.detectors import MutualScoring, PromptDetector, Scores, get_detector, load_detector
from workbench.detectors._musc import _blocks, mutual_scores, mutual_similarity, rescore_images
from workbench.detectors._prompt import match_prompts
from workbench.errors import DataError, WorkbenchError
from workbench.metrics import image_auroc, pixel_auroc


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    return make_sample(tmp_path_factory.mktemp("zero-shot") / "sample")


@pytest.fixture(scope="module")
def sample(sample_dir):
    return FolderDataset(sample_dir)


@pytest.fixture(scope="module")
def small_batch(sample):
    """16 test images: 4 of each kind (mutual scoring needs a crowd, tests need speed)."""
    out = []
    for kind in ("good", "patch", "scratch", "stain"):
        out += [s for s in sample.test if s.kind == kind][:4]
    return out


@pytest.fixture(scope="module")
def musc_run(sample):
    """MuSc with default settings on the whole test split (42 images), once."""
    return MutualScoring().score_batch(sample.test)


@pytest.fixture(scope="module")
def prompt_fitted(sample):
    """The prompt detector with default settings (one normal image as the prompt)."""
    return PromptDetector().fit(sample)


def _top_pixel_inside(samples, maps) -> float:
    hits = []
    for s, amap in zip(samples, maps):
        mask = s.mask()
        if mask is None:
            continue
        assert amap.shape == mask.shape and amap.dtype == np.float32
        r, c = np.unravel_index(np.argmax(amap), amap.shape)
        hits.append(bool(mask[r, c]))
    return float(np.mean(hits))


# ----------------------------------------------------------------------------- core math
def _naive_similarity(z: torch.Tensor) -> torch.Tensor:
    n = z.shape[0]
    out = torch.full((n, z.shape[1], n), float("-inf"))
    for i in range(n):
        for j in range(n):
            if i != j:
                out[i, :, j] = (z[i] @ z[j].T).max(1).values
    return out


@pytest.mark.parametrize("chunk", [None, 7, 30, 64, 95])
def test_chunked_mutual_similarity_equals_the_naive_one(chunk):
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(6, 30, 8, generator=g), dim=-1)
    # 7: pieces of one image; 30 and 64: one or two whole images per block; None: one block
    torch.testing.assert_close(mutual_similarity(z, chunk), _naive_similarity(z), rtol=1e-6, atol=1e-6)
    a = mutual_scores(z, 0.3, chunk)
    b = mutual_scores(z, 0.3, None)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_blocks_cover_every_patch_once():
    for n, p, chunk in ((5, 12, 5), (5, 12, 12), (5, 12, 30), (3, 10, None)):
        seen = np.zeros((n, p), int)
        for i0, i1, p0, p1 in _blocks(n, p, chunk):
            assert chunk is None or (i1 - i0) * (p1 - p0) <= max(chunk, 1)
            seen[i0:i1, p0:p1] += 1
        assert (seen == 1).all()


def test_mutual_scores_follow_the_definition():
    # image 0 holds a patch no other image has; every other patch has copies everywhere
    g = torch.Generator().manual_seed(1)
    common = torch.nn.functional.normalize(torch.randn(4, 16, generator=g), dim=-1)
    z = common.repeat(10, 1, 1)
    odd = torch.nn.functional.normalize(torch.randn(16, generator=g), dim=-1)
    z[0, 2] = odd
    s = mutual_scores(z, top_fraction=0.3)
    assert s.shape == (10, 4)
    k = int(0.3 * 9)
    expected = (2 - 2 * (common @ odd).max()).clamp_min(0).sqrt()
    assert s[0, 2] == pytest.approx(float(expected), rel=1e-5) and k == 2
    assert float(s[1:].max()) < 1e-3 and float(s[0, [0, 1, 3]].max()) < 1e-3


def test_rescoring_smooths_over_neighbours_and_commutes_with_affine_maps():
    rng = np.random.default_rng(0)
    feats = np.concatenate([rng.normal(0, 0.1, (5, 8)) + 5, rng.normal(0, 0.1, (5, 8)) - 5])
    scores = rng.normal(size=10)
    np.testing.assert_allclose(rescore_images(scores, feats, [1]), scores)
    np.testing.assert_allclose(rescore_images(scores, feats, 0), scores)
    out = rescore_images(scores, feats, [1, 2, 3])
    np.testing.assert_allclose(rescore_images(3 * scores + 2, feats, [1, 2, 3]), 3 * out + 2)
    # neighbours come from the own cluster: a cluster's mean score is preserved roughly
    assert abs(out[:5].mean() - scores[:5].mean()) < abs(scores[:5].mean() - scores[5:].mean())


# ----------------------------------------------------------------------------- MuSc
def test_musc_localises_the_defects(musc_run, sample):
    scores = musc_run.scores
    assert isinstance(scores, Scores) and len(scores) == len(sample.test)
    bad = [i for i, s in enumerate(sample.test) if s.label == 1]
    inside = _top_pixel_inside([sample.test[i] for i in bad], [scores.anomaly_maps[i] for i in bad])
    assert inside >= 0.8, f"top pixel inside the mask for {inside:.0%} of the defective images"
    labels = np.array([s.label for s in sample.test])
    assert image_auroc(labels, scores.image_scores) > 0.9
    assert image_auroc(labels, musc_run.raw_image_scores) > 0.9
    with_mask = [i for i in bad if sample.test[i].mask() is not None]  # as `evaluate` does
    assert pixel_auroc([sample.test[i].mask() for i in with_mask], [scores.anomaly_maps[i] for i in with_mask]) > 0.95


def test_musc_does_not_depend_on_the_order_of_the_batch(small_batch):
    det = MutualScoring()
    a = det.predict(small_batch)
    perm = np.random.default_rng(3).permutation(len(small_batch))
    b = det.predict([small_batch[i] for i in perm])
    np.testing.assert_allclose(b.image_scores, a.image_scores[perm], rtol=1e-5, atol=1e-6)
    for j, i in enumerate(perm):
        np.testing.assert_allclose(b.anomaly_maps[j], a.anomaly_maps[i], rtol=1e-4, atol=1e-5)


def test_musc_groups_large_batches_by_content_not_by_order(small_batch):
    det = MutualScoring(max_references=5)
    a = det.score_batch(small_batch)
    assert [len(g) for g in a.groups] == [6, 5, 5] and a.info["references_per_image"] == 4
    assert sorted(np.concatenate(a.groups).tolist()) == list(range(len(small_batch)))
    s = det.settings()["last_batch"]
    assert s["n_groups"] == 3 and "groups" in s["reference_subsampling"]
    perm = np.arange(len(small_batch))[::-1]
    b = det.score_batch([small_batch[i] for i in perm])
    groups_a = sorted(sorted(int(i) for i in g) for g in a.groups)
    groups_b = sorted(sorted(int(perm[i]) for i in g) for g in b.groups)
    assert groups_a == groups_b
    np.testing.assert_allclose(b.scores.image_scores, a.scores.image_scores[perm], rtol=1e-5, atol=1e-6)
    # another seed draws other groups
    c = MutualScoring(max_references=5, random_state=1).score_batch(small_batch)
    assert sorted(sorted(g.tolist()) for g in c.groups) != groups_a


def test_musc_chunked_and_unchunked_computation_agree(small_batch):
    batch = small_batch[::2]
    a = MutualScoring(chunk_patches=None).predict(batch)  # one block per stage and degree
    b = MutualScoring(chunk_patches=500).predict(batch)  # pieces of one image (1200 patches)
    np.testing.assert_allclose(a.image_scores, b.image_scores, rtol=1e-5, atol=1e-6)
    for x, y in zip(a.anomaly_maps, b.anomaly_maps):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_musc_ignores_training_data_and_has_no_thresholds(small_batch):
    det = MutualScoring()
    assert det.fit(["/nowhere/does-not-exist.png"]) is det  # never read
    scores = det.predict(small_batch[:6])
    assert scores.image_threshold is None and scores.pixel_threshold is None
    assert "zero-shot" in scores.threshold_info["note"]
    with pytest.raises(WorkbenchError, match="threshold"):
        scores.labels()
    with pytest.raises(DataError, match="at least 2 images"):
        det.predict(small_batch[:1])
    with pytest.raises(DataError, match="aspect ratio"):
        det.predict([s.image() for s in small_batch[:3]] + [np.zeros((100, 300), np.uint8)])
    with pytest.raises(WorkbenchError, match="degrees"):
        MutualScoring(degrees=(2,)).predict(small_batch[:3])


def test_musc_accepts_any_size_and_arrays(small_batch):
    # images of another size than the sample's, as arrays: maps come back at each image's size
    imgs = [s.image()[:200, :280] for s in small_batch[:5]] + [np.ascontiguousarray(small_batch[5].image()[:210, :294])]
    scores = MutualScoring().predict(imgs)
    assert [m.shape for m in scores.anomaly_maps] == [im.shape for im in imgs]
    assert np.isfinite(scores.image_scores).all()


def test_musc_settings_say_what_was_done(musc_run, sample):
    det = MutualScoring()
    det.score_batch(sample.test[:4])
    s = det.settings()
    json.dumps(s)
    assert s["uses_training_images"] is False and "ignored" in s["training_images"]
    assert s["degrees"] == [1, 3, 5] and s["top_fraction"] == 0.3 and s["rescore_k"] == [1, 2, 3]
    assert s["stages"] == [8, 16] and s["image_threshold"] is None and s["transductive"] is True
    assert s["threshold_info"]["source"] is None
    last = s["last_batch"]
    assert last["n_images"] == 4 and last["references_per_image"] == 3 and last["n_groups"] == 1
    assert last["grid"] == {"8": [30, 40], "16": [15, 20]} and s["input_size"] == [240, 320]
    info = musc_run.info
    assert info["references_per_image"] == len(sample.test) - 1 and "none" in info["reference_subsampling"]


def test_musc_save_load_round_trip(small_batch, tmp_path):
    det = MutualScoring(degrees=(1, 3), rescore_k=2, sigma=2.0)
    path = det.save(tmp_path / "musc.pt")  # no fit needed
    loaded = load_detector(path)
    assert type(loaded) is MutualScoring and loaded.settings() == det.settings()
    assert MutualScoring.load(path).degrees == [1, 3]
    batch = small_batch[:6]
    a, b = det.predict(batch), loaded.predict(batch)
    np.testing.assert_array_equal(a.image_scores, b.image_scores)
    for x, y in zip(a.anomaly_maps, b.anomaly_maps):
        np.testing.assert_array_equal(x, y)
    sa, sb = det.settings(), loaded.settings()
    assert sa.pop("last_batch")["seconds"] and sb.pop("last_batch")
    assert sa == sb


# ----------------------------------------------------------------------------- prompt
def test_prompt_localises_the_defects(prompt_fitted, sample):
    det = prompt_fitted
    assert det.n_prompts_ == 1 and len(det.prompt_names_) == 1
    scores = det.predict(sample.test)
    bad = [i for i, s in enumerate(sample.test) if s.label == 1]
    inside = _top_pixel_inside([sample.test[i] for i in bad], [scores.anomaly_maps[i] for i in bad])
    assert inside >= 0.8, f"top pixel inside the mask for {inside:.0%} of the defective images"
    labels = np.array([s.label for s in sample.test])
    assert image_auroc(labels, scores.image_scores) > 0.9
    # thresholds come from held-out normal images, never from the prompt
    info = scores.threshold_info
    assert info["source"] == "holdout" and info["n_images"] >= 3
    assert scores.image_threshold is not None and scores.pixel_threshold is not None


def test_prompt_explains_which_prompt_patch_matched(sample):
    det = PromptDetector(shots=3).fit(sample)
    assert det.n_prompts_ == 3 and det.settings()["n_prompts"] == 3
    test = [s for s in sample.test if s.kind == "patch"][:2]
    matches = det.explain(test)
    h, w = det.grid_
    for m in matches:
        assert m.distance.shape == m.prompt.shape == m.row.shape == m.col.shape == (h, w)
        assert m.prompt.min() >= 0 and m.prompt.max() < 3 and m.prompt_names == det.prompt_names_
        assert m.row.max() < h and m.col.max() < w and m.grid_stride == 8
    # the reported match is the nearest prompt patch: recompute a few by brute force
    from workbench.detectors._base import as_image_items

    items = as_image_items(test[:1])
    _, feats = next(det._iter_features(items, cache=False, group=1))
    from workbench.detectors._prompt import prompt_embedding

    q = prompt_embedding(feats, det.default_stages, det.pool)[0]
    m = matches[0]
    for r, c in ((0, 0), (h // 2, w // 3), (h - 1, w - 1)):
        d = (det.prompts_ - q[:, r, c][None, :, None, None]).pow(2).sum(1).sqrt()  # (K, h, w)
        assert float(d.min()) == pytest.approx(float(m.distance[r, c]), abs=1e-4)
        k, y, x = m.prompt[r, c], m.row[r, c], m.col[r, c]
        assert float(d[k, y, x]) == pytest.approx(float(d.min()), abs=1e-4)
        assert m.prompt_pixel(r, c) == (int(k), int(y) * 8 + 4, int(x) * 8 + 4)


def test_more_prompts_only_improve_the_match_and_windows_stay_local():
    g = torch.Generator().manual_seed(0)
    unit = lambda t: torch.nn.functional.normalize(t, dim=0 if t.dim() == 3 else 1)  # noqa: E731
    prompts = unit(torch.randn(4, 16, 6, 7, generator=g))
    query = unit(torch.randn(16, 6, 7, generator=g))
    d1, _, _ = match_prompts(query, prompts[:1])
    d4, k4, _ = match_prompts(query, prompts)
    assert (d4 <= d1 + 1e-6).all() and set(k4.unique().tolist()) <= {0, 1, 2, 3}
    dw, kw, pw = match_prompts(query, prompts, window=1)
    assert (dw >= d4 - 1e-6).all()
    rows, cols = pw // 7, pw % 7
    yy, xx = torch.meshgrid(torch.arange(6), torch.arange(7), indexing="ij")
    assert ((rows - yy).abs() <= 1).all() and ((cols - xx).abs() <= 1).all()
    d0, _, p0 = match_prompts(query, prompts, window=0)  # same position only
    assert (p0 == (yy * 7 + xx)).all()
    # a query equal to a prompt is explained by it exactly
    dq, kq, pq = match_prompts(prompts[2], prompts)
    assert float(dq.max()) < 1e-3 and (kq == 2).all() and (pq == torch.arange(42).view(6, 7)).all()


def test_prompt_settings_and_round_trip(sample, tmp_path):
    det = PromptDetector(shots=2, window=3, random_state=5).fit(sample)
    s = det.settings()
    json.dumps(s)
    assert s["shots"] == 2 and s["n_prompts"] == 2 and s["n_fit_images"] == 2
    assert s["alignment"] == "window of +-3 cells" and s["refine"] == "polish"
    assert len(s["prompt_names"]) == 2 and all(n.endswith(".png") for n in s["prompt_names"])
    assert s["threshold_info"]["source"] == "holdout"
    # prompts are seeded and nested (the 1-shot prompt is the first of the 2-shot one)
    again = PromptDetector(shots=2, window=3, random_state=5).fit(sample)
    assert again.prompt_names_ == det.prompt_names_
    assert PromptDetector(shots=1, random_state=5).fit(sample.train).prompt_names_ == det.prompt_names_[:1]
    path = det.save(tmp_path / "prompt.pt")
    loaded = load_detector(path)
    assert type(loaded) is PromptDetector and loaded.settings() == s
    images = sample.test[::9]
    a, b = det.predict(images), loaded.predict(images)
    np.testing.assert_array_equal(a.image_scores, b.image_scores)
    for x, y in zip(a.anomaly_maps, b.anomaly_maps):
        np.testing.assert_array_equal(x, y)
    assert loaded.explain(images[:1])[0].prompt_names == det.prompt_names_


def test_prompt_errors_and_few_images(sample):
    with pytest.raises(WorkbenchError, match="shots"):
        PromptDetector(shots=0).fit(sample)
    with pytest.raises(WorkbenchError, match="refine"):
        PromptDetector(refine="magic").fit(sample)
    few = PromptDetector(shots=8).fit(sample.train[:3])  # no holdout with < 8 images
    assert few.n_prompts_ == 3 and few.image_threshold_ is None


# ----------------------------------------------------------------------------- CLI
def test_registry_names():
    assert get_detector("musc") is MutualScoring and get_detector("prompt") is PromptDetector


@pytest.mark.parametrize("argv, name", [(["--detector", "musc"], "musc"),
                                        (["--detector", "prompt", "--shots", "2"], "prompt")])
def test_cli_evaluate_writes_metrics(sample_dir, tmp_path, argv, name):
    out = tmp_path / name
    assert main(["evaluate", str(sample_dir), *argv, "--out", str(out), "--no-progress", "--overlays", "2"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["detector"] == name and m["n_test"] == 42
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert 0.8 < m[key] <= 1.0, (key, m[key])
    s = m["settings"]
    if name == "musc":
        assert s["uses_training_images"] is False and m["image_threshold"] is None
        assert s["last_batch"]["references_per_image"] == 41
    else:
        assert s["n_prompts"] == 2 and s["shots"] == 2 and m["image_threshold"] is not None
    assert (out / "scores.csv").exists() and any((out / "maps").iterdir())
