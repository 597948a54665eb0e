"""The trilemma metrics (keras_gen.evaluation): quality, coverage and speed, and the report.

Feature-based tests use the shipped classifier (saved_models/mnist_classifier.keras) on the
committed real MNIST sample; the precision/recall and KID algebra is checked on toy Gaussians
with known answers; evaluate_paths runs end to end on a tiny exported VAE.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from keras_gen.evaluation import (class_entropy, class_histogram, classes_covered, coverage_metrics,
                                  detect_image_format, evaluate_paths, frechet_distance,
                                  inception_score, kernel_inception_distance, kl_to_uniform,
                                  load_classifier, measure_sampling_speed, normalize_images,
                                  precision_recall)
from keras_gen.evaluation.classifier import MODELS_ENV, classifier_path, models_dir
from keras_gen.evaluation.report import _plan
from keras_gen.models.kinds import get_model_kind

DDPM_KIND = get_model_kind("ddpm")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def classifier():
    return load_classifier("mnist")


@pytest.fixture(scope="module")
def real(classifier, mnist_sample):
    """probs, features and labels of the 2000 committed real MNIST images."""
    images, labels = mnist_sample
    probs, feats = classifier.probs_and_features(images)
    return probs, feats, labels


# ------------------------------------------------------------------------------- classifier

def test_shipped_classifiers_are_found_and_accurate(classifier, mnist_sample, fashion_sample):
    assert classifier_path("mnist") == models_dir() / "mnist_classifier.keras"
    assert classifier.info["test_accuracy"] >= 0.99 and classifier.info["dataset"] == "mnist"
    images, labels = mnist_sample
    assert (classifier.predict(images) == labels).mean() >= 0.98
    fashion = load_classifier("fashion_mnist")
    assert fashion.info["test_accuracy"] >= 0.90
    images, labels = fashion_sample
    assert (fashion.predict(images) == labels).mean() >= 0.87
    for path in (classifier.path, fashion.path):
        assert path.stat().st_size < 4 * 2 ** 20


def test_classifier_outputs(classifier, mnist_sample):
    images = mnist_sample[0][:10]
    probs, feats = classifier.probs_and_features(images)
    assert probs.shape == (10, 10) and feats.shape == (10, 128)
    assert probs.dtype == feats.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (feats >= 0).all()  # ReLU features


def test_missing_classifier_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    assert models_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match="train-classifier"):
        load_classifier("mnist")


# ------------------------------------------------------------------------------- image formats

def _base(mnist_sample, n=8):
    return mnist_sample[0][:n]


FORMATS = {
    # name: (make from uint8 (N, 28, 28), expected value_range, size, channel_axis)
    "uint8": (lambda u: u, "uint8", 28, False),
    "uint8 channel": (lambda u: u[..., None], "uint8", 28, True),
    "float 0_1": (lambda u: u.astype(np.float32) / 255, "0_1", 28, False),
    "float 0_1 channel": (lambda u: u[..., None].astype(np.float64) / 255, "0_1", 28, True),
    "float -1_1 channel": (lambda u: u[..., None] / 127.5 - 1.0, "-1_1", 28, True),
    "float -1_1 padded 32": (lambda u: np.pad(u / 127.5 - 1.0, [(0, 0), (2, 2), (2, 2)], constant_values=-1),
                             "-1_1", 32, False),
    "float 0_1 padded 32 channel": (lambda u: np.pad(u / 255.0, [(0, 0), (2, 2), (2, 2)])[..., None],
                                    "0_1", 32, True),
    "int64": (lambda u: u.astype(np.int64), "uint8", 28, False),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_normalize_images_detects_each_format(name, mnist_sample):
    u = _base(mnist_sample)
    make, value_range, size, channel_axis = FORMATS[name]
    x = make(u)
    assert detect_image_format(x) == (value_range, size, channel_axis)
    out = normalize_images(x)
    assert out.shape == (len(u), 28, 28, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0], u / 255.0, atol=1e-6)


def test_classifier_sees_the_same_images_in_every_format(classifier, mnist_sample):
    u = _base(mnist_sample)
    reference = classifier.probs(u)
    for make, *_ in FORMATS.values():
        np.testing.assert_allclose(classifier.probs(make(u)), reference, atol=1e-5)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((28, 28), np.uint8), "batch axis"),
    (np.zeros((4, 1, 28, 28), np.float32), "channels-first"),
    (np.zeros((4, 28, 28, 3), np.float32), "one channel"),
    (np.zeros((4, 30, 30), np.float32), "28x28 or 32x32"),
    (np.zeros((4, 28, 32), np.float32), "28x28 or 32x32"),
    (np.zeros((0, 28, 28), np.uint8), "empty"),
    (np.full((4, 28, 28), 200.0, np.float32), "divide by 255"),
    (np.full((4, 28, 28), -2.0, np.float32), r"\[0, 1\] or \[-1, 1\]"),
    (np.full((4, 28, 28), np.nan, np.float32), "NaN"),
    (np.full((4, 28, 28), 300, np.int32), "0..255"),
    (np.full((4, 28, 28), "a"), "dtype"),
])
def test_normalize_images_rejects_unsupported_input(bad, match):
    with pytest.raises(ValueError, match=match):
        normalize_images(bad)


# ------------------------------------------------------------------------------------ quality

def test_fid_of_a_set_against_itself_is_zero(real):
    feats = real[1]
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6 * np.trace(np.cov(feats.T)))


def test_fid_grows_with_noise(classifier, mnist_sample, real):
    images = mnist_sample[0][1000:].astype(np.float32) / 255.0
    reference = real[1][:1000]
    rng = np.random.default_rng(0)
    fids = []
    for sigma in (0.0, 0.15, 0.3, 0.6):
        noisy = np.clip(images + sigma * rng.standard_normal(images.shape).astype(np.float32), 0, 1)
        fids.append(frechet_distance(reference, classifier.features(noisy)))
    assert all(a < b for a, b in zip(fids, fids[1:])), fids
    assert fids[-1] > 10 * fids[0]


def test_fid_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20000, 3))
    b = 2.0 * rng.standard_normal((20000, 3)) + 1.0
    # ||mu||^2 = 3, Tr(S_a + S_b - 2 (S_a S_b)^1/2) = 3 * (1 + 4 - 4) = 3
    assert frechet_distance(a, b) == pytest.approx(6.0, rel=0.03)


def test_kid_matches_the_unbiased_formula():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 3)) + 0.5
    k = lambda u, v: (u @ v / 3 + 1.0) ** 3  # noqa: E731
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    expected = (xx + yy) / (m * (m - 1)) - 2 * xy / m ** 2
    assert kernel_inception_distance(x, y, subsets=3, subset_size=m).mean == pytest.approx(expected)


def test_kid_is_unbiased_on_same_distribution_and_positive_against_noise(classifier, real):
    feats = real[1]
    same = kernel_inception_distance(feats[:1000], feats[1000:], subsets=20, subset_size=500)
    noise = classifier.features(np.random.default_rng(0).random((500, 28, 28), dtype=np.float32))
    other = kernel_inception_distance(feats[:1000], noise, subsets=20, subset_size=500)
    assert other.mean > 0 and other.mean > 3 * other.std
    assert abs(same.mean) < 0.01 * other.mean
    # unbiased: averaged over many independent small draws from one Gaussian it is ~0
    rng = np.random.default_rng(0)
    values = [kernel_inception_distance(rng.standard_normal((10, 4)), rng.standard_normal((10, 4)),
                                        subsets=1, subset_size=10).mean for _ in range(300)]
    assert abs(np.mean(values)) < 3 * np.std(values) / math.sqrt(len(values))


def _gaussian(n, center, d=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)) + np.asarray(center, np.float64)


def test_precision_recall_identical_distributions_are_both_high():
    pr = precision_recall(_gaussian(1000, [0, 0], seed=0), _gaussian(1000, [0, 0], seed=1))
    assert pr.precision > 0.9 and pr.recall > 0.9


def test_precision_recall_disjoint_distributions_are_both_zero():
    pr = precision_recall(_gaussian(500, [0, 0], seed=0), _gaussian(500, [50, 0], seed=1))
    assert pr.precision == 0.0 and pr.recall == 0.0


def test_precision_recall_one_mode_of_two_is_precise_but_recalls_half():
    real = np.concatenate([_gaussian(500, [-10, 0], seed=0), _gaussian(500, [10, 0], seed=1)])
    fake = _gaussian(1000, [10, 0], seed=2)
    pr = precision_recall(real, fake)
    assert pr.precision > 0.9
    assert 0.4 < pr.recall < 0.55


# ------------------------------------------------------------------------------------ coverage

def test_coverage_of_real_and_single_class_sets(real, mnist_sample):
    probs, _, labels = real
    full = coverage_metrics(probs)
    assert full["classes_covered"] == 10
    assert full["normalized_entropy"] > 0.98 and full["kl_uniform"] < 0.02
    assert full["inception_score"] > 8.0
    ones = coverage_metrics(probs[labels == 1])
    assert ones["classes_covered"] == 1
    assert ones["entropy"] < 0.1 and ones["inception_score"] < 1.2


def test_coverage_formulas_on_known_histograms():
    assert class_entropy(np.ones(10)) == pytest.approx(math.log(10))
    assert kl_to_uniform(np.ones(10)) == pytest.approx(0.0, abs=1e-12)
    one = np.eye(10)[0] * 50
    assert class_entropy(one) == 0.0 and kl_to_uniform(one) == pytest.approx(math.log(10))
    assert classes_covered([97, 2, 1] + [0] * 7) == 2  # 2% counts, 1% does not
    balanced = np.eye(10)[np.arange(100) % 10]
    assert inception_score(balanced) == pytest.approx(10.0, rel=1e-6)
    assert inception_score(np.full((100, 10), 0.1)) == pytest.approx(1.0)
    assert class_histogram(balanced).tolist() == [10] * 10
    assert class_histogram(np.array([3, 3, 1])).tolist() == [0, 1, 0, 2, 0, 0, 0, 0, 0, 0]
    with pytest.raises(ValueError):
        class_histogram(np.array([0.5, 0.2]))


# ------------------------------------------------------------------------------------ speed

def test_measure_sampling_speed_counts_runs_and_reports_the_median():
    calls = []

    def sample(num_images, seed):
        calls.append((num_images, seed))
        return np.zeros((num_images, 28, 28, 1), np.float32)

    speed = measure_sampling_speed(sample, n=10, batch_size=4, repeats=3, warmup=1, nfe_per_sample=50)
    assert calls == [(4, 0), (4, 1), (2, 2)] * 4  # 1 warm-up + 3 timed runs, batches 4 + 4 + 2
    assert speed["samples_per_s_min"] <= speed["samples_per_s"] <= speed["samples_per_s_max"]
    assert len(speed["seconds"]) == 3 and speed["nfe_per_s"] == pytest.approx(50 * speed["samples_per_s"])
    with pytest.raises(ValueError):
        measure_sampling_speed(sample, n=0)


# ------------------------------------------------------------------------------------ report

def test_ddpm_exports_are_planned_at_full_ddpm_and_each_ddim_step_count():
    runs, notes = _plan("ddpm_tiny", DDPM_KIND, {"kind": "ddpm", "config": {"schedule": {"timesteps": 20}}}, (5, 10, 25))
    assert [r["short_label"] for r in runs] == ["DDPM 20", "DDIM 5", "DDIM 10"]
    assert [r["options"] for r in runs] == [{"sampler": "ddpm"}, {"sampler": "ddim", "steps": 5},
                                           {"sampler": "ddim", "steps": 10}]
    assert [r["nfe_per_sample"] for r in runs] == [20, 5, 10]
    assert len({r["group"] for r in runs}) == 1 and "25" in notes[0]
    runs, _ = _plan("ddpm_tiny", DDPM_KIND, {"kind": "ddpm", "config": {"schedule": {"timesteps": 20}}}, (5,),
                    ddpm_full=False)
    assert [r["short_label"] for r in runs] == ["DDIM 5"]
    runs, notes = _plan("vae", get_model_kind("vae"), {"kind": "vae", "config": {}}, (5,))
    assert len(runs) == 1 and runs[0]["nfe_per_sample"] == 1 and not notes


@pytest.fixture(scope="module")
def vae_report(tiny_exports, tmp_path_factory):
    """evaluate_paths on tiny_vae_run's export, n=64, with a report folder (cheap settings: 1000
    real images, 5 KID subsets). The export is reached through a link whose name holds HTML
    ("vae <tiny> & co"), so its row label does too. Attributes: returned (evaluate_paths' dict),
    dir (the report folder), report (its report.json). `keras-gen demo` in
    test_shipped_models.py checks the same page and command through the CLI."""
    root = tmp_path_factory.mktemp("vae_report")
    link = root / "vae <tiny> & co"
    link.symlink_to(tiny_exports["vae"], target_is_directory=True)
    returned = evaluate_paths([link], n=64, report_dir=root / "report", batch_size=32, n_real=1000,
                              speed_repeats=2, kid_subsets=5, verbose=False)
    return SimpleNamespace(returned=returned, dir=root / "report",
                           report=json.loads((root / "report" / "report.json").read_text()))


def test_evaluate_on_a_tiny_exported_vae(vae_report):
    saved = vae_report.report
    assert saved["dataset"] == "mnist" and saved["n"] == 64
    (row,) = saved["rows"]
    assert row["label"] == "vae <tiny> & co (VAE)"
    assert row["kind"] == "vae" and row["nfe_per_sample"] == 1 and row["n"] == 64
    assert row["fid"] > 0 and row["samples_per_s"] > 0 and len(row["speed"]["seconds"]) == 2
    assert 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1 and sum(row["histogram"]) == 64
    refs = {r["label"]: r for r in saved["references"]}
    assert set(refs) == {"real train", "uniform noise", "single class (0)"}
    # the references bracket the scale; this VAE is barely trained, so only "worse than real"
    assert refs["real train"]["fid"] < min(row["fid"], refs["uniform noise"]["fid"],
                                           refs["single class (0)"]["fid"])
    assert refs["single class (0)"]["classes_covered"] == 1
    assert refs["real train"]["classes_covered"] >= 9
    assert vae_report.returned["rows"][0]["fid"] == pytest.approx(row["fid"])
    # the command (from Python: this process's, re-runnable: it splits back into sys.argv), the machine
    assert shlex.split(saved["command"]) == sys.argv
    assert saved["machine"]["cpu_count"] == os.cpu_count() and saved["machine"]["keras"]
    for name in ("trilemma.png", "histogram_vae_tiny_co_VAE.png", "samples_vae_tiny_co_VAE.png",
                 "histogram_uniform_noise.png", "samples_uniform_noise.png"):
        assert (vae_report.dir / name).read_bytes()[:8] == PNG_MAGIC, name
    # index.html carries every PNG of the folder whole, as data: URIs (what it shows: the browser test)
    page = (vae_report.dir / "index.html").read_text()
    embedded = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert sorted(hashlib.sha256(base64.b64decode(src)).hexdigest() for src in embedded) == sorted(
        hashlib.sha256(path.read_bytes()).hexdigest() for path in vae_report.dir.glob("*.png"))


def _browser_paths():
    """(chromium, chromedriver) found on PATH, or None."""
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture
def headless_chromium():
    """A Selenium session on a headless chromium (Debian's chromium and chromium-driver, which
    `make browser` installs; the driver's path is given, so Selenium Manager never goes online)."""
    paths = _browser_paths()
    if paths is None:
        pytest.skip("no browser: the report page test needs chromium and chromedriver on PATH "
                    "(`make browser`, or apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)  # --no-sandbox: CI runs as root
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


# What the test reads off the loaded page, in one round trip.
PAGE_FACTS_JS = """
const texts = rows => [...rows].map(tr => [...tr.cells].map(td => td.textContent));
return {
  headers: [...document.querySelectorAll('#trilemma-table thead th')].map(th => th.textContent),
  models: texts(document.querySelectorAll('#trilemma-table tbody.models tr')),
  references: texts(document.querySelectorAll('#trilemma-table tbody.references tr')),
  images: [...document.images].map(img => ({alt: img.alt, scheme: img.src.split(',')[0],
                                            complete: img.complete, width: img.naturalWidth})),
  outside: document.querySelectorAll('script, link, iframe, [src^="http"], [href^="http"]').length,
  injected: document.querySelector('tiny') !== null,
  command: document.getElementById('command').textContent,
  machine: Object.fromEntries([...document.querySelectorAll('#machine tr')]
                              .map(tr => [tr.cells[0].textContent, tr.cells[1].textContent])),
};
"""


def test_the_report_page_renders_in_a_headless_browser(vae_report, headless_chromium):
    """index.html, opened from the file system: the printed table's columns and rows, every image
    (chart, each row's samples and histogram) decoded from its data: URI, nothing fetched from
    outside, the row label shown as text (not parsed as HTML), the command and the machine."""
    from keras_gen.evaluation.table import TABLE_COLUMNS, table_cells

    report = vae_report.report
    headless_chromium.get((vae_report.dir / "index.html").as_uri())
    page = headless_chromium.execute_script(PAGE_FACTS_JS)
    assert page["headers"] == [header for header, _, _ in TABLE_COLUMNS]
    assert page["models"] == [table_cells(r) for r in report["rows"]]
    assert page["references"] == [table_cells(r) for r in report["references"]]
    assert page["models"][0][0] == "vae <tiny> & co (VAE)" and not page["injected"]
    labels = [r["label"] for r in report["rows"] + report["references"]]
    assert sorted(img["alt"] for img in page["images"]) == sorted(
        ["trilemma chart"] + [f"{what}: {label}" for label in labels for what in ("samples", "predicted classes")])
    for img in page["images"]:
        assert img["scheme"] == "data:image/png;base64" and img["complete"] and img["width"] > 0, img
    chart = next(img for img in page["images"] if img["alt"] == "trilemma chart")
    assert chart["width"] == int.from_bytes((vae_report.dir / "trilemma.png").read_bytes()[16:20], "big")
    assert page["outside"] == 0
    assert page["command"] == report["command"]
    assert page["machine"]["cpu_count"] == str(os.cpu_count())
    assert page["machine"]["tensorflow"] == report["machine"]["tensorflow"]


def test_exports_must_agree_on_their_dataset():
    from keras_gen.evaluation.report import _dataset_of

    loaded = [(None, "a", None, {"dataset": "mnist"}), (None, "b", None, {"dataset": "fashion_mnist"})]
    with pytest.raises(ValueError, match="different datasets"):
        _dataset_of(loaded, None)
    assert _dataset_of(loaded, "mnist") == ("mnist", [])


def test_classifier_fid_separates_real_from_noise(mnist_sample):
    from keras_gen.evaluation import classifier_fid

    real = classifier_fid(mnist_sample[0][:1000], "mnist", n_real=1000)
    noise = classifier_fid(np.random.default_rng(0).random((1000, 28, 28, 1), dtype=np.float32),
                           "mnist", n_real=1000)
    assert real < 20 < 100 < noise


def test_full_step_ddpm_rows_use_their_own_sample_count(tmp_path, capsys):
    """ddpm_full_n: the T-step rows get fewer samples (timed by their quality sampling, not run
    again); DDIM rows keep n; the plan with estimated times is printed before any sampling."""
    from keras_gen import export_saved_model
    from keras_gen.models.ddpm import build_ddpm
    from keras_gen.presets import get_preset

    model = build_ddpm(get_preset("ddpm", "tiny"))
    model.sample(1, 0, progress=False)  # builds the U-Net and the EMA copy
    export = export_saved_model(model, tmp_path / "ddpm_tiny", metadata={"dataset": "mnist"})
    report = evaluate_paths([export], n=12, ddim_steps=(5,), ddpm_full_n=6, batch_size=8, n_real=500,
                            speed_repeats=2, kid_subsets=3, references=False, verbose=True)
    out = capsys.readouterr().out
    plan = out[out.index("[evaluate] plan"):]
    assert plan.index("DDPM 20") < plan.index("DDIM 5") < plan.index("total sampling") < plan.index("FID")
    assert "n=6" in plan and "NFE 20" in plan and " min" in plan
    full, ddim = report["rows"]
    assert (full["sampler"], full["n"], sum(full["histogram"])) == ("ddpm", 6, 6)
    assert (ddim["sampler"], ddim["n"], sum(ddim["histogram"])) == ("ddim", 12, 12)
    assert full["speed"]["from"] == "quality sampling" and len(ddim["speed"]["seconds"]) == 2
    assert full["samples_per_s"] == pytest.approx(6 / full["sampling_seconds"])
    assert any("full-chain rows use n=6" in note for note in report["notes"])
    assert full["nfe_per_sample"] == 20 and report["ddpm_full_n"] == 6
    with pytest.raises(ValueError, match="ddpm_full_n"):
        evaluate_paths([export], n=12, ddpm_full_n=2, verbose=False)


def test_the_per_model_trilemma_marks_and_their_colours(tmp_path):
    """The article's red / blue triangle per model, from measured rows: each mark by its rule,
    and the figure's vertex colours follow the marks."""
    from PIL import Image

    from keras_gen.plotting import model_trilemma, trilemma_marks

    def row(label, fid, speed, classes=10):
        return {"label": label, "fid": fid, "samples_per_s": speed, "classes_covered": classes,
                "normalized_entropy": 0.97, "min_class_fraction": 0.02}

    vae, gan, ddpm = row("vae", 60.0, 1500.0), row("dcgan", 65.0, 2500.0), row("ddpm", 12.6, 5.0)
    rows = [vae, gan, ddpm]
    assert trilemma_marks(ddpm, rows) == {"quality": True, "speed": False, "coverage": True}
    assert trilemma_marks(gan, rows) == {"quality": False, "speed": True, "coverage": True}
    # 18.9 is exactly 1.5x the best FID (good), 250/s exactly a tenth of the fastest (good)
    assert trilemma_marks(row("edge", 18.9, 250.0), rows) == {"quality": True, "speed": True, "coverage": True}
    assert trilemma_marks(row("past", 19.0, 249.0, classes=9), rows) == {
        "quality": False, "speed": False, "coverage": False}

    def colours(path):
        pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(int)
        red = np.sum((pixels[:, 0] > 180) & (pixels[:, 1] < 90) & (pixels[:, 2] < 90))
        blue = np.sum((pixels[:, 2] > 150) & (pixels[:, 0] < 80))
        return red, blue

    model_trilemma(ddpm, rows, tmp_path / "ddpm.png")
    model_trilemma(row("best", 12.6, 2500.0), rows, tmp_path / "best.png")
    red, blue = colours(tmp_path / "ddpm.png")
    assert blue > 0 and 1.8 < red / blue < 2.2  # two red vertices, one blue (equal discs)
    red, blue = colours(tmp_path / "best.png")
    assert red > 0 and blue == 0


def test_the_row_nearest_the_trilemma_corner():
    from keras_gen.plotting import nearest_the_corner

    def row(label, fid, speed, classes=10):
        return {"label": label, "fid": fid, "samples_per_s": speed, "classes_covered": classes}

    slow_good, fast_bad = row("ddim50", 12.0, 5.0), row("gan", 65.0, 2500.0)
    student = row("student4", 15.0, 60.0)
    assert nearest_the_corner([slow_good, fast_bad]) in (slow_good, fast_bad)
    assert nearest_the_corner([slow_good, fast_bad, student]) is student  # near both best values
    # a fast, sharp model that drops classes is not the answer
    assert nearest_the_corner([slow_good, fast_bad, student, row("collapsed", 5.0, 3000.0, classes=3)]) is student
    assert nearest_the_corner([row("ref", 3.0, None)]) is None
