"""Few-pass diffusion: the eps / x0 / v prediction targets, the trailing timestep grid, and
progressive distillation (Salimans & Ho 2022) from the maths to `keras-gen distill` on the CLI.

Oracles: hand-computed values of the conversions, which follow diffusers' ``prediction_type``
conventions ("epsilon", "sample", "v_prediction": DDIMScheduler.step and get_velocity);
diffusers' own formula for its "trailing" timestep spacing; and a delta data distribution, whose
exact noise predictor is known in closed form, for the distillation target.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import TINY_T, check_export_in_child, export_call, final_arrays, read_state, tiny_ddpm, tiny_unet
from keras_gen.diffusion import NoiseSchedule, ddim_timesteps, ddim_timesteps_tf, sample
from keras_gen.diffusion.targets import alpha_sigma, eps_and_x0, target_from_x0, training_target
from keras_gen.export import read_export_info
from keras_gen.models.ddpm import DDPM
from keras_gen.models.distillation import DistilledDDPM, ProgressiveDistillation, make_student
from subprocess_jobs import explain, finish, start

KERAS_GEN = str(Path(sys.executable).parent / "keras-gen")


# ----------------------------------------------------------------------------- prediction targets


def test_conversions_match_hand_computed_values():
    """abar = 0.64: alpha 0.8, sigma 0.6. x0 = 0.5, eps = -1: z = 0.4 - 0.6 = -0.2 and
    v = alpha eps - sigma x0 = -0.8 - 0.3 = -1.1 (diffusers' get_velocity)."""
    alpha, sigma = tf.constant(0.8), tf.constant(0.6)
    x0, eps, z = tf.constant(0.5), tf.constant(-1.0), tf.constant(-0.2)
    assert float(training_target("v", x0, eps, alpha, sigma)) == pytest.approx(-1.1)
    assert float(training_target("x0", x0, eps, alpha, sigma)) == pytest.approx(0.5)
    assert float(training_target("eps", x0, eps, alpha, sigma)) == pytest.approx(-1.0)
    # DDIMScheduler.step: v_prediction: x0 = alpha z - sigma v = -0.16 + 0.66, eps = alpha v + sigma z
    for prediction, output in (("v", -1.1), ("x0", 0.5), ("eps", -1.0)):
        got_eps, got_x0 = eps_and_x0(prediction, tf.constant(output), z, alpha, sigma)
        assert float(got_x0) == pytest.approx(0.5, abs=1e-6), prediction
        assert float(got_eps) == pytest.approx(-1.0, abs=1e-6), prediction
        assert float(target_from_x0(prediction, x0, z, alpha, sigma)) == pytest.approx(output, abs=1e-6)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_conversions_round_trip_at_several_timesteps(kind):
    schedule = NoiseSchedule(1000, kind)
    rng = np.random.default_rng(0)
    t = tf.constant([0, 10, 250, 500, 900, 999])
    x0 = tf.constant(rng.uniform(-1, 1, (6, 4, 4, 1)), tf.float32)
    eps = tf.constant(rng.normal(size=(6, 4, 4, 1)), tf.float32)
    z = schedule.q_sample(x0, t, eps)
    alpha, sigma = alpha_sigma(schedule, t, z)
    abar = schedule.alphas_cumprod[t.numpy()].reshape(-1, 1, 1, 1)
    v_by_hand = np.sqrt(abar) * eps.numpy() - np.sqrt(1 - abar) * x0.numpy()
    np.testing.assert_allclose(training_target("v", x0, eps, alpha, sigma), v_by_hand, atol=1e-5)
    for prediction in ("eps", "x0", "v"):
        got_eps, got_x0 = eps_and_x0(prediction, training_target(prediction, x0, eps, alpha, sigma), z, alpha, sigma)
        # eps models cannot recover x0 where alpha ~ 0 (t = 999), nor x0 models eps where sigma ~ 0
        rows = slice(0, 5) if prediction == "eps" else slice(1, 6) if prediction == "x0" else slice(None)
        np.testing.assert_allclose(got_x0.numpy()[rows], x0.numpy()[rows], atol=2e-3)
        np.testing.assert_allclose(got_eps.numpy()[rows], eps.numpy()[rows], atol=2e-3)


def test_trailing_grid_is_diffusers_and_nests():
    for T, n in ((1000, 1), (1000, 4), (1000, 64), (1000, 7), (20, 4), (20, 20)):
        diffusers = np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1  # "trailing" spacing
        np.testing.assert_array_equal(ddim_timesteps(T, n, "trailing"), diffusers)
        np.testing.assert_array_equal(ddim_timesteps_tf(T, tf.constant(n), "trailing").numpy(), diffusers)
    for n in (1, 2, 4, 8, 16, 32):  # the N grid is every other point of the 2N grid
        np.testing.assert_array_equal(ddim_timesteps(1000, 2 * n, "trailing")[::2], ddim_timesteps(1000, n, "trailing"))
    np.testing.assert_array_equal(ddim_timesteps(1000, 5), [999, 749, 499, 250, 0])  # linspace unchanged
    with pytest.raises(ValueError, match="spacing"):
        ddim_timesteps(1000, 4, "leading")


def test_an_x0_model_trains_and_samples_finite_images(mnist_sample):
    """(v models train and sample in the distillation tests below: every student predicts v.)"""
    prediction = "x0"
    keras.utils.set_random_seed(0)
    model = tiny_ddpm(ddim_steps=3, prediction=prediction)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x0 = (mnist_sample[0][:64, :, :, None].astype("float32") / 127.5 - 1.0)
    x0 = np.pad(x0, ((0, 0), (2, 2), (2, 2), (0, 0)))
    history = model.fit(x0, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    for kwargs in ({"sampler": "ddpm"}, {"sampler": "ddim", "steps": 3}):
        images = model.sample(4, 0, progress=False, **kwargs)
        assert images.shape == (4, 28, 28, 1) and np.isfinite(images).all()
        assert 0.0 <= images.min() and images.max() <= 1.0
    assert model.get_config()["prediction"] == prediction
    assert DistilledDDPM.from_config(model.get_config() | {"teacher_steps": 2}).prediction == prediction


def test_the_loss_regresses_the_chosen_target(monkeypatch):
    """diffusion_loss compares the U-Net's output with v = alpha eps - sigma x0 for a v model."""
    keras.utils.set_random_seed(1)
    model = tiny_ddpm(ddim_steps=3, prediction="v")
    seen = {}
    original = model.schedule.q_sample

    def recording_q_sample(x0, t, noise):
        seen.update(x0=x0, t=t, noise=noise)
        return original(x0, t, noise)

    monkeypatch.setattr(model.schedule, "q_sample", recording_q_sample)
    x0 = tf.random.uniform((4, 32, 32, 1), -1, 1)
    loss = float(model.diffusion_loss(x0, training=False))
    x_t = original(seen["x0"], seen["t"], seen["noise"])
    alpha, sigma = alpha_sigma(model.schedule, seen["t"], x0)
    v = alpha * seen["noise"] - sigma * x0
    expected = float(tf.reduce_mean(tf.square(v - model.unet((x_t, seen["t"])))))
    assert loss == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------------- the analytic oracle


class ExactNoise(keras.layers.Layer):
    """The exact eps of a delta data distribution at x*: eps(z, t) = (z - alpha_t x*) / sigma_t."""

    def __init__(self, schedule, x_star):
        super().__init__()
        self.schedule, self.x_star = schedule, tf.constant(x_star)

    def call(self, inputs, training=False):
        z, t = inputs
        alpha, sigma = alpha_sigma(self.schedule, t, z)
        return (z - alpha * self.x_star) / sigma


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_a_perfect_teachers_target_is_its_two_steps_and_the_data_point(steps):
    schedule = NoiseSchedule(TINY_T)
    x_star = np.random.default_rng(0).uniform(-0.9, 0.9, (1, 32, 32, 1)).astype("float32")
    teacher = SimpleNamespace(ema_unet=ExactNoise(schedule, x_star), prediction="eps", schedule=schedule,
                              x0_bound=DDPM.x0_bound, trainable=True)
    student = DistilledDDPM(tiny_unet(), schedule, teacher_steps=2 * steps, ddim_steps=steps, seed=0)
    distillation = ProgressiveDistillation(teacher, student, seed=0)
    i = tf.constant(np.arange(1, steps + 1).repeat(2), tf.int32)  # every grid point, twice
    n = int(i.shape[0])
    t_grid = ddim_timesteps(TINY_T, steps, "trailing")[::-1]  # t_1 < ... < t_N
    z = schedule.q_sample(np.repeat(x_star, n, 0), t_grid[i.numpy() - 1],
                          tf.random.stateless_normal((n, 32, 32, 1), seed=[0, 1]))
    t, x_target = distillation.distillation_target(z, i)
    np.testing.assert_array_equal(t.numpy(), t_grid[i.numpy() - 1])
    # the target is the data point, and one student DDIM step with it lands on the teacher's two
    np.testing.assert_allclose(x_target.numpy(), np.repeat(x_star, n, 0), atol=2e-4)
    teacher_grid = ddim_timesteps(TINY_T, 2 * steps, "trailing")[::-1]
    t_mid = teacher_grid[2 * i.numpy() - 2]
    t_next = np.where(i.numpy() > 1, t_grid[np.maximum(i.numpy() - 2, 0)], -1)
    two = distillation.teacher_step(distillation.teacher_step(z, t, t_mid), t_mid, t_next)
    from keras_gen.diffusion import ddim_step
    alpha, sigma = alpha_sigma(schedule, t, z)
    one = ddim_step(schedule, (z - alpha * x_target) / sigma, t, t_next, z, x0=x_target)
    np.testing.assert_allclose(one.numpy(), two.numpy(), atol=2e-4)

    # a student that outputs the target's v reproduces the data point in its `steps` steps
    def perfect_student(x, t):
        alpha, sigma = alpha_sigma(schedule, t, x)
        return target_from_x0("v", tf.constant(np.repeat(x_star, x.shape[0], 0)), x, alpha, sigma)

    x_T = tf.random.stateless_normal((3, 32, 32, 1), seed=[5, 0])
    out = sample(perfect_student, x_T, schedule, "ddim", steps=steps, seed=0, progress=False, prediction="v",
                 spacing="trailing")
    np.testing.assert_allclose(out.numpy(), np.repeat(x_star, 3, 0), atol=1e-4)


def test_targets_outside_the_data_range_are_clipped_unless_asked_not_to():
    """A teacher whose data sits at 1.5 (outside [-1, 1]): its exact target is 1.5, clipped to 1."""
    schedule = NoiseSchedule(TINY_T)
    x_star = np.full((1, 32, 32, 1), 1.5, "float32")
    z = schedule.q_sample(np.repeat(x_star, 2, 0), tf.constant([19, 9]), tf.zeros((2, 32, 32, 1)))
    targets = {}
    for clip in (True, False):
        teacher = SimpleNamespace(ema_unet=ExactNoise(schedule, x_star), prediction="eps", schedule=schedule,
                                  x0_bound=DDPM.x0_bound)  # the pixel range [-1, 1]
        student = DistilledDDPM(tiny_unet(), schedule, teacher_steps=4, ddim_steps=2, seed=0)
        distillation = ProgressiveDistillation(teacher, student, clip_teacher_x0=False, clip_target=clip)
        targets[clip] = distillation.distillation_target(z, tf.constant([2, 1]))[1].numpy()
    np.testing.assert_allclose(targets[False], 1.5, atol=1e-3)
    np.testing.assert_array_equal(targets[True], 1.0)


def test_a_data_bank_replaces_the_training_batch(monkeypatch, tmp_path):
    """With a bank of the teacher's samples (distill's ``data="teacher"``) the loss noises rows of
    the bank, whatever the batch holds; a bank of another shape is refused."""
    from keras_gen.models.distillation import load_data_bank

    keras.utils.set_random_seed(4)
    teacher = tiny_ddpm(ddim_steps=4)
    bank = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 1)).astype("float32")
    distillation = ProgressiveDistillation(teacher, make_student(teacher, 2, seed=0), seed=0, data_bank=bank)
    seen = []
    original = teacher.schedule.q_sample
    monkeypatch.setattr(teacher.schedule, "q_sample", lambda x0, t, noise: seen.append(x0) or original(x0, t, noise))
    loss = distillation.distillation_loss(tf.fill((8, 32, 32, 1), 5.0), training=False)
    assert np.isfinite(float(loss))
    [x0] = seen
    assert x0.shape == (8, 32, 32, 1)
    for row in x0.numpy():
        assert any(np.array_equal(row, b) for b in bank)
    path = tmp_path / "bank.npy"
    np.save(path, bank[:, :16, :16])
    with pytest.raises(ValueError, match="diffusion space"):
        load_data_bank(path, teacher)
    np.save(path, bank)
    np.testing.assert_array_equal(load_data_bank(path, teacher), bank)


def test_the_teachers_samples_are_drawn_in_chunks_that_survive_a_kill(tmp_path, monkeypatch):
    """keras_gen.distill.teacher_data: chunk k holds the teacher's DDIM samples from seed
    TEACHER_DATA_SEED + k * chunk; a draw interrupted after some chunks redraws only the missing ones."""
    import keras_gen.models.distillation as distillation
    from keras_gen.distill import TEACHER_DATA_SEED, teacher_data

    keras.utils.set_random_seed(6)
    teacher_file = tmp_path / "teacher.keras"
    tiny_ddpm(ddim_steps=2).save(teacher_file)
    bank = np.load(teacher_data(tmp_path, teacher_file, n=5, steps=2, chunk=2))
    teacher = distillation.load_teacher(teacher_file)
    expected = np.concatenate([distillation.trailing_diffusion_samples(teacher, k, 2, TEACHER_DATA_SEED + i)
                               for i, k in ((0, 2), (2, 2), (4, 1))])
    assert bank.shape == (5, 32, 32, 1)
    np.testing.assert_allclose(bank, expected, rtol=0, atol=1e-5)

    (tmp_path / "teacher_data.npy").unlink()  # as if killed after chunks 0 and 2 of 3
    (tmp_path / "teacher_data" / "0000004.npy").unlink()
    drawn = []
    real = distillation.trailing_diffusion_samples
    monkeypatch.setattr(distillation, "trailing_diffusion_samples",
                        lambda model, n, steps, seed: drawn.append(seed) or real(model, n, steps, seed))
    np.testing.assert_array_equal(np.load(teacher_data(tmp_path, teacher_file, n=5, steps=2, chunk=2)), bank)
    assert drawn == [TEACHER_DATA_SEED + 4]


def test_the_student_starts_as_the_teacher_and_refuses_a_conditional_teacher():
    keras.utils.set_random_seed(2)
    teacher = tiny_ddpm(ddim_steps=3)
    student = make_student(teacher, 2, seed=0)
    assert student.kind == "distilled" and student.ddim_steps == 2 and student.teacher_steps == 4
    assert student.prediction == "v" and student.timestep_spacing == "trailing" and student.ddim_eta == 0.0
    for net in (student.unet, student.ema_unet):
        for got, want in zip(net.weights, teacher.ema_unet.weights):
            np.testing.assert_array_equal(got.numpy(), want.numpy())
    with pytest.raises(ValueError, match="unconditional"):
        make_student(tiny_ddpm(ddim_steps=3, num_classes=10), 2)


# ----------------------------------------------------------------------------- keras-gen distill


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, tiny_train_runs):
    """One round (2 -> 1 steps) of `keras-gen distill --data teacher` on the session's tiny latent
    DDPM export (conftest.tiny_train_runs "latent_ddpm": an export lacks the encoder, so the rounds
    noise the teacher's own samples), run straight and run again with a SIGKILL as soon as a
    mid-epoch checkpoint exists, then `--resume`d."""
    root = tmp_path_factory.mktemp("distill")
    run = tiny_train_runs.result("latent_ddpm")
    assert run.rc == 0, explain(run)
    teacher = run.out / "saved_model"
    cmd = [KERAS_GEN, "distill", str(teacher), "--preset", "tiny", "--from-steps", "2", "--to-steps", "1",
           "--fid-n", "0", "--verbose", "0", "--checkpoint-every", "3", "--data", "teacher",
           "--teacher-samples", "5"]
    straight = start(cmd + ["--out", str(root / "straight")], root, "straight", root, slot=True)
    killed = start(cmd + ["--out", str(root / "killed")], root, "killed", root)  # no slot: killed early
    round_dir = root / "killed" / "round_1_2_to_1"
    state_at_kill, deadline = None, time.monotonic() + 300
    while time.monotonic() < deadline:
        state = read_state(round_dir)
        if killed[0].poll() is not None:
            state_at_kill = ("finished before a kill", state)
            break
        if state is not None and state["step_in_epoch"] > 0:
            killed[0].send_signal(signal.SIGKILL)
            killed[0].wait()
            state_at_kill = (killed[0].returncode, read_state(round_dir))
            break
        time.sleep(0.01)
    straight = finish(straight, timeout=900)  # it may wait for a slot first
    resumed = finish(start([KERAS_GEN, "distill", "--resume", "--out", str(root / "killed"), "--verbose", "0"],
                           root, "resume", root, slot=True), timeout=900)
    return SimpleNamespace(root=root, teacher=teacher, teacher_run=run.out, straight=straight,
                           killed=state_at_kill, resumed=resumed)


def test_distill_resumes_after_sigkill_with_the_same_weights(distilled):
    assert distilled.straight.rc == 0, explain(distilled.straight)
    rc, state = distilled.killed
    assert rc == -signal.SIGKILL and state["step_in_epoch"] > 0, distilled.killed
    assert distilled.resumed.rc == 0, explain(distilled.resumed)
    assert f"at epoch {state['epoch'] + 1}, step {state['step_in_epoch']}" in distilled.resumed.stdout
    straight_state, straight = final_arrays(distilled.root / "straight" / "round_1_2_to_1")
    resumed_state, resumed = final_arrays(distilled.root / "killed" / "round_1_2_to_1")
    assert resumed_state["finished"] and resumed_state["resumes"] == 1
    assert resumed_state["global_step"] == straight_state["global_step"] > 0
    assert sorted(resumed) == sorted(straight)
    for key in straight:
        np.testing.assert_allclose(resumed[key], straight[key], rtol=0, atol=1e-6, err_msg=key)
    record = json.loads((distilled.root / "killed" / "rounds.json").read_text())
    assert [(r["model"], r["steps"], r["round"]) for r in record["records"]] == [("student", 1, 1)]
    assert record["records"][0]["wall_seconds"] > 0


def test_the_teachers_own_samples_are_the_training_data(distilled):
    """The bank is the rebuilt teacher's deterministic trailing DDIM samples at the recorded seeds;
    each round's config names it; the batches that set the step count are still the latent kind's."""
    from keras_gen.distill import TEACHER_DATA_SEED
    from keras_gen.models.distillation import DistilledKind, trailing_diffusion_samples
    from keras_gen.models.latent import LatentDDPMKind
    from keras_gen.sampling import model_from_export

    out = distilled.root / "straight"
    bank = np.load(out / "teacher_data.npy")
    expected = trailing_diffusion_samples(model_from_export(distilled.teacher), 5, 2, TEACHER_DATA_SEED)
    assert bank.shape == (5, 8, 8, 2)
    np.testing.assert_allclose(bank, expected.numpy(), rtol=0, atol=1e-5)
    config = json.loads((out / "round_1_2_to_1" / "summary.json").read_text())["train_config"]
    assert config["teacher_data"] == str(out / "teacher_data.npy")
    assert config["data_kind"] == "latent_ddpm"  # [0, 1] digits, not the pixel DDPM's [-1, 1]
    latent_batches = LatentDDPMKind().data_options(config)
    assert DistilledKind().data_options(config) == latent_batches != DistilledKind().data_options({})


def test_the_round_folder_holds_a_served_one_step_student(distilled, tmp_path):
    """The student shares the teacher's decoder and scale, counts the decoder in network_passes,
    records its lineage and serves its images without keras_gen."""
    from keras_gen.evaluation import model_card
    from keras_gen.models.latent import DistilledLatentDDPM

    folder = distilled.root / "straight" / "round_1_2_to_1"
    for output in ("model.keras", "history.csv", "samples.png", "teacher_vs_student.png", "summary.json",
                   "samples/epoch_001.png", "checkpoints/epoch_001.keras"):
        assert (folder / output).exists(), output
    info = read_export_info(folder / "saved_model")
    assert info["kind"] == "distilled_latent" and info["network_passes"] == 1 + 1  # one step, one decode
    assert info["config"]["prediction"] == "v" and info["config"]["teacher_steps"] == 2
    assert "sample_ddpm" not in info["signatures"]
    [round_1] = info["distillation"]["rounds"]  # the lineage and cost of the student
    assert round_1["steps"] == 1 and info["distillation"]["wall_seconds_total"] == round_1["wall_seconds"] > 0
    assert "over 1 rounds from the teacher" in model_card([folder / "saved_model"])
    student = keras.saving.load_model(folder / "model.keras")
    teacher = keras.saving.load_model(distilled.teacher_run / "model.keras")
    assert isinstance(student, DistilledLatentDDPM) and student.ddim_steps == 1 and student.teacher_steps == 2
    assert student.scale_factor == teacher.scale_factor
    for got, want in zip(student.first_stage.decoder.get_weights(), teacher.first_stage.decoder.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert any(not np.array_equal(s, t) for s, t in zip(student.unet.get_weights(), teacher.ema_unet.get_weights()))
    calls = {"default": export_call("serving_default", output="images", num_images=3, seed=4)}
    served = check_export_in_child({"student": folder / "saved_model"}, calls, tmp_path,
                                   while_running=lambda: student.sample(3, 4, progress=False))
    assert served.arrays["default"].shape == (3, 28, 28, 1)
    np.testing.assert_allclose(served.arrays["default"], served.expected, rtol=0, atol=2e-5)


def test_distill_refuses_what_it_cannot_do(distilled, tmp_path):
    from keras_gen.distill import distill, round_steps

    assert round_steps(64, 1) == [32, 16, 8, 4, 2, 1] and round_steps(8, 4) == [4]
    for bad in ((6, 4), (4, 4), (3, 1)):
        with pytest.raises(ValueError, match="halved"):
            round_steps(*bad)
    with pytest.raises(ValueError, match="--resume"):  # an existing distillation is not overwritten
        distill(distilled.teacher, distilled.root / "straight", preset="tiny", fid_n=0, data="teacher")
    with pytest.raises(ValueError, match="holds no distillation"):
        distill(None, tmp_path / "nothing", resume=True)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a distillation"):
        distill(distilled.teacher, tmp_path / "foreign", preset="tiny", fid_n=0, data="teacher")
    assert (tmp_path / "foreign" / "notes.txt").read_text() == "mine"
