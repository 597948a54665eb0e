"""The tutorial scripts run end to end with the tiny presets and write their figures.

Each script runs as a reader would run it (`python tutorials/0N_*.py --preset tiny --out DIR`), in
its own interpreter, on the cached real MNIST (`make test` fetches it first); tutorial 08 finds two
of its four runs already trained, as a reader who trained them with `keras-gen train` would
(SESSION_RUNS). Each runs when a test first needs it, so only the selected ones run (`-k 05` runs
tutorial 05 alone); every test names its tutorial in its id, which tests/conftest.py reads to make
each tutorial a unit of work.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import subprocess_jobs

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The figures each script writes (the tiny presets train 2 epochs: grids at epochs 0, 1, 2).
FIGURES = {
    "01_vae": ["01_training_batch.png", "01_loss_curve.png", "01_samples_latent2.png",
               "01_latent_manifold.png", "01_latent_scatter.png", "01_samples_latent100_summed_kl.png",
               "01_samples_latent100_article_kl.png",
               *[f"01_epochs{run}/epoch_00{e}.png" for run in ("", "_latent100_summed_kl", "_latent100_article_kl")
                 for e in range(3)]],
    "02_dcgan": ["02_loss_curve_alternating.png", "02_samples_alternating.png", "02_loss_curve_fit.png",
                 "02_samples_fit.png", "02_latent_manifold.png",
                 "02_epochs/epoch_000.png", "02_epochs/epoch_001.png", "02_epochs/epoch_002.png"],
    "03_ddpm": ["03_forward_process.png", "03_loss_curve.png", "03_samples_ddpm.png",
                "03_reverse_process.png", "03_reverse_engineering.png", "03_reverse_engineering_half.png",
                "03_samples_ddim.png",
                "03_epochs/epoch_000.png", "03_epochs/epoch_001.png", "03_epochs/epoch_002.png"],
    "05_conditional": ["05_vae_classes.png", "05_dcgan_classes.png", "05_ddpm_classes.png",
                       "05_ddpm_guidance.png", "05_guidance_sweep.png", "05_export_label7.png"],
    # 06 builds an untrained tiny latent teacher and distils it one round (2 -> 1 steps).
    "06_fast_sampling": ["06_ddim_steps.png", "06_two_steps_one.png", "06_fid_vs_steps.png", "06_students.png",
                         "distillation/fid_vs_steps.png"] + [
        f"distillation/round_1_2_to_1/{name}.png" for name in (
            "samples", "loss_curve", "teacher_vs_student", "samples/epoch_000", "samples/epoch_001",
            "samples/epoch_002")],
    # 04 scores the shipped models (saved_models/): one histogram and sample grid per row.
    "04_trilemma": ["trilemma.png", "trilemma_vae.png", "trilemma_dcgan.png", "trilemma_ddpm.png"] + [f"{kind}_{row}.png" for kind in ("histogram", "samples") for row in (
        "vae_VAE", "dcgan_DCGAN", "ddpm_DDIM_5", "ddpm_DDIM_10", "real_train", "uniform_noise",
        "single_class_0")],
    # 07 reads the recorded families table and trains a tiny flow for three steps.
    "07_families": ["07_families.png", "07_coupling_jacobian.png", "07_digit.png", "07_squeeze.png",
                    "07_flow_temperatures.png"],
    # 08 trains the tiny runs its runs/ lacks (here two of four: SESSION_RUNS); each run writes its own figures.
    "08_latent_diffusion": ["08_class_grid.png", "08_latent_channels.png", "08_prior_vs_noise.png",
                            "08_reconstructions.png", "08_samples.png"] + [
        f"runs/{run}/{name}.png" for run, figures in (
            ("autoencoder", ("latent_channels", "reconstructions")), ("autoencoder_plain", ("latent_channels", "reconstructions")),
            ("latent_ddpm", ("prior_vs_noise",)), ("latent_ddpm_conditional", ("prior_vs_noise", "class_grid")))
        for name in (*figures, "loss_curve", "samples", "samples/epoch_000", "samples/epoch_001", "samples/epoch_002")],
}


# Run folders a tutorial finds finished under <out>/runs instead of training them: tutorial 08
# trains what its runs/ lacks, and its tiny autoencoder and latent DDPM are the session's
# (conftest.tiny_train_runs: the same kinds and tiny presets), so it trains only the other two.
SESSION_RUNS = {"08_latent_diffusion": ("autoencoder", "latent_ddpm")}


class TutorialRuns(dict):
    """{name: run}: a tutorial runs (in a child process) when a test first asks for it, so that
    each worker runs only the tutorials of the tests it was given (tests/conftest.py makes each
    tutorial a unit of work), in a slot (subprocess_jobs.SLOTS): not all at once on two cores."""

    def __init__(self, root: Path, tiny_train_runs):
        super().__init__()
        self.root, self.tiny_train_runs = root, tiny_train_runs

    def __missing__(self, name):
        for run in SESSION_RUNS.get(name, ()):
            result = self.tiny_train_runs.result(run)
            assert result.rc == 0, subprocess_jobs.explain(result)
            shutil.copytree(result.out, self.root / name / "runs" / run)
        started = time.perf_counter()
        job = subprocess_jobs.start(
            [sys.executable, TUTORIALS / f"{name}.py", "--preset", "tiny", "--out", self.root / name],
            self.root, name, self.root, env={"MPLBACKEND": "Agg"}, slot=True)
        run = subprocess_jobs.finish(job, timeout=1200)  # the wait for a slot included
        self[name] = SimpleNamespace(rc=run.rc, stdout=run.stdout, stderr=run.stderr,
                                     seconds=time.perf_counter() - started, out=self.root / name)
        return self[name]


@pytest.fixture(scope="module")
def tutorial_runs(tmp_path_factory, tiny_train_runs):
    """Each tutorial run once with --preset tiny, on first use; {name: (rc, stdout, stderr, seconds, out)}."""
    return TutorialRuns(tmp_path_factory.mktemp("tutorials"), tiny_train_runs)


@pytest.mark.parametrize("name", list(FIGURES))
def test_tutorial_runs_and_writes_its_figures(tutorial_runs, name):
    run = tutorial_runs[name]
    assert run.rc == 0, f"rc={run.rc}\nstdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    assert "figures written to" in run.stdout
    for figure in FIGURES[name]:
        path = run.out / figure
        assert path.is_file(), f"{name} did not write {figure}"
        assert path.read_bytes()[:8] == PNG_MAGIC, path
    written = sorted(str(p.relative_to(run.out)) for p in run.out.rglob("*.png"))
    assert written == sorted(FIGURES[name])  # the list above is complete


@pytest.mark.parametrize("name", ["04_trilemma"])  # the id lets -k 04 select it with its run
def test_trilemma_tutorial_reports_every_shipped_model(tutorial_runs, name):
    import json

    run = tutorial_runs[name]
    assert run.rc == 0, run.stderr[-3000:]
    report = json.loads((run.out / "report.json").read_text())
    assert [r["label"] for r in report["rows"]] == ["vae (VAE)", "dcgan (DCGAN)", "ddpm DDIM 5", "ddpm DDIM 10"]
    assert [r["nfe_per_sample"] for r in report["rows"]] == [1, 1, 5, 10]
    assert all(r["n"] == 64 for r in report["rows"] + report["references"])
    # The verdict lines are computed from the table, not written in.
    best = min(report["rows"], key=lambda r: r["fid"])
    assert f"best quality: {best['label']} (FID {best['fid']:.1f})" in run.stdout


@pytest.mark.parametrize("name", ["07_families"])  # the id lets -k 07 select it with its run
def test_families_tutorial_checks_the_flow_and_prints_the_recorded_table(tutorial_runs, name):
    import json
    import re

    from keras_gen.evaluation import families_table, family_rows
    from keras_gen.zoo import family_models

    run = tutorial_runs[name]
    assert run.rc == 0, run.stderr[-3000:]
    stability = TUTORIALS.parent / "benchmarks" / "results" / "stability" / "stability.json"
    assert families_table(family_rows([m.path for m in family_models()], json.loads(stability.read_text()))) in run.stdout
    layer, brute = map(float, re.search(r"layer (\S+), brute force (\S+)", run.stdout).groups())
    assert abs(layer - brute) < 1e-6  # the coupling's sum(s) is its Jacobian's log-determinant
    assert "uniform density: 8.000 bits/dim" in run.stdout
    before, after = map(float, re.search(r"small flow: (\S+) -> (\S+) test bits/dim", run.stdout).groups())
    assert after < before  # three steps on the exact likelihood already lower it
    elbo, iwae = map(float, re.search(r"k=100: ELBO (\S+), L_k (\S+) nats", run.stdout).groups())
    assert iwae >= elbo


@pytest.mark.parametrize("name", ["06_fast_sampling"])  # the id lets -k 06 select it with its run
def test_fast_sampling_tutorial_checks_the_target_and_rescores_the_record(tutorial_runs, name):
    import re

    run = tutorial_runs[name]
    assert run.rc == 0, run.stderr[-3000:]
    # one DDIM step to the target x~ lands where the teacher's two steps land (here on latents)
    difference = float(re.search(r"lands on the teacher's two: max \|difference\| (\S+)", run.stdout).group(1))
    assert difference < 1e-5
    # a latent model's step count plus one decoder pass
    assert "network passes of DDIM with 4 steps: 5" in run.stdout
    assert re.search(r"student 1 steps: classifier FID \S+ \(n=32\), \S+ samples/s, network passes 2", run.stdout)
    # scored with the rounds' protocol, the tutorial's teacher and student FIDs are the record's
    pairs = re.findall(r"(\d+) steps:? FID (\S+) \(record (\S+)\)", run.stdout)
    assert sorted(int(steps) for steps, _, _ in pairs) == [1, 1, 2]  # teacher 1 and 2, student 1
    assert all(measured == recorded for _, measured, recorded in pairs)
