# %% [markdown]
# # Tutorial 6: fast sampling, from DDIM strides to distilled 1-4 step students
#
# The article ends on the generative trilemma: its DDPM draws the best samples but needs one
# network pass per step, and it names strided sampling (DDIM) as the way out. This tutorial
# measures how far strides go, then follows progressive distillation (Salimans & Ho 2022,
# "Progressive Distillation for Fast Sampling of Diffusion Models") round by round.
#
# Article section: "Conclusion" of Cheigh & Yamada, *Generating Images using VAEs, GANs, and
# Diffusion Models* (Towards Data Science, 2023,
# https://towardsdatascience.com/generating-images-using-vaes-gans-and-diffusion-models-48963ddeb2b2).
# Run it as a script or cell by cell (`# %%` cells, or notebooks/06_fast_sampling.ipynb):
#
#     keras-gen distill saved_models/ddpm --from-steps 64 --to-steps 1 --out runs/distill   # long: --resume continues it
#     python tutorials/06_fast_sampling.py --preset full --distillation runs/distill --out outputs/tutorial_fast
#     python tutorials/06_fast_sampling.py --preset tiny --out /tmp/fast     # what the tests run (a tiny teacher)
#
# Every figure is written to `--out` (and shown under its cell in a notebook).

# %%
import argparse
import inspect
import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import keras_gen
from keras_gen import plotting
from keras_gen.diffusion import ddim_step, ddim_timesteps
from keras_gen.diffusion.targets import alpha_sigma
from keras_gen.evaluation import classifier_fid, models_dir
from keras_gen.models.distillation import ProgressiveDistillation, make_student, trailing_samples

SETTINGS = {
    # n: samples per FID; steps: DDIM step counts of the teacher's curve; from_steps: where the
    # tiny preset's own distillation starts
    "full": dict(n=500, steps=(1, 2, 4, 8, 16, 32, 64)),
    "tiny": dict(n=32, steps=(1, 2), from_steps=2),
}
parser = argparse.ArgumentParser()
parser.add_argument("--preset", default="full", choices=sorted(SETTINGS))
parser.add_argument("--distillation", help="a `keras-gen distill` folder (full preset: default runs/distill; "
                    "tiny: a tiny teacher is distilled here)")
parser.add_argument("--out", default="outputs/tutorial_fast")
args, _ = parser.parse_known_args()
settings = SETTINGS[args.preset]
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## The teacher
# With `--preset full` the teacher is the shipped DDPM (1000 timesteps, trained to predict the
# noise eps). Its export has no `.keras` file; `keras_gen.sampling.model_from_export` rebuilds the
# Keras model from the export's config and weights, and checks that it draws the export's images.
# The tiny preset (what the tests run) builds an untrained tiny DDPM instead: every step below
# runs, on noise.

# %%
if args.preset == "full":
    teacher = keras_gen.sampling.model_from_export(models_dir() / "ddpm")
else:
    teacher = keras_gen.get_model_kind("ddpm").build(keras_gen.get_preset("ddpm", "tiny"))
    teacher.save(out / "tiny_teacher.keras")
print(f"teacher: T={teacher.schedule.timesteps}, predicts {teacher.prediction}")

# %% [markdown]
# ## DDIM steps against quality
# Deterministic DDIM (eta 0) on the "trailing" grid t_i = round(i T / N) - 1 (it always starts
# at t = T - 1, and the grid of N steps is every other point of the grid of 2N). Few steps blur
# and then break the digits: each step has to jump further along the curved path from noise to
# image, and one eps prediction says where to go only locally.

# %%
seeds_grid, teacher_fid = [], {}
for steps in settings["steps"]:
    images = trailing_samples(teacher, settings["n"], steps, seed=0)
    teacher_fid[steps] = classifier_fid(images)
    seeds_grid.append(images[:8])
    print(f"teacher DDIM {steps:3d} steps: classifier FID {teacher_fid[steps]:.1f} (n={settings['n']})")
plotting.image_strip([row for row in seeds_grid], out / "06_ddim_steps.png",
                     row_labels=[f"{s} steps" for s in settings["steps"]],
                     title="The teacher's deterministic DDIM: the same 8 seeds at each step count")

# %% [markdown]
# ## Why distillation works: one student step for two teacher steps
# Take a training image x, noise it to z_t on the student's grid, and run the teacher's two DDIM
# steps z_t -> z_mid -> z_next. DDIM is deterministic, so there is one clean image x~ for which a
# *single* DDIM step from z_t lands exactly on z_next:
#
#     x~ = (z_next - (sigma_next / sigma_t) z_t) / (alpha_next - (sigma_next / sigma_t) alpha_t).
#
# The student learns to predict x~ (as v = alpha eps - sigma x, Salimans & Ho's parameterisation,
# well defined even at t = T - 1 where an eps prediction would divide by alpha ~ 0). Once it does,
# its N steps walk the teacher's 2N-step path; then it becomes the next round's teacher.
# The target in keras_gen's code, then the pieces for one image at the student's first step:

# %%
print(inspect.getsource(ProgressiveDistillation.distillation_target))

# %%
student = make_student(teacher, steps=1)
distillation = ProgressiveDistillation(teacher, student)
x = keras_gen.data.preprocess_images(keras_gen.load_dataset("mnist", "test")[0][:1],
                                     **keras_gen.get_model_kind("ddpm").data_options({}))
i = tf.constant([1])
t = int(ddim_timesteps(teacher.schedule.timesteps, 1, "trailing")[0])
z = teacher.schedule.q_sample(x, tf.constant([t]), tf.random.stateless_normal(tf.shape(x), seed=[0, 0]))
t_mid = int(ddim_timesteps(teacher.schedule.timesteps, 2, "trailing")[1])
z_mid = distillation.teacher_step(z, tf.constant([t]), tf.constant([t_mid]))
z_next = distillation.teacher_step(z_mid, tf.constant([t_mid]), tf.constant([-1]))
_, x_target = distillation.distillation_target(z, i)
alpha, sigma = alpha_sigma(teacher.schedule, tf.constant([t]), z)
one_step = ddim_step(teacher.schedule, (z - alpha * x_target) / sigma, tf.constant([t]), tf.constant([-1]), z,
                     x0=x_target)
print("one student step with x~ lands on the teacher's two: max |difference| "
      f"{float(tf.reduce_max(tf.abs(one_step - z_next))):.2e}")
strip = [np.clip(np.asarray(a)[:, 2:30, 2:30] * 0.5 + 0.5, 0, 1) for a in (x, z, z_mid, z_next, x_target)]
plotting.image_strip([np.concatenate(strip)], out / "06_two_steps_one.png",
                     col_labels=["image x", f"z at t={t}", f"teacher: t={t_mid}", "teacher: clean", "target x~"],
                     title="Distillation target: one step that lands where the teacher's two do")

# %% [markdown]
# ## The rounds
# `keras-gen distill TEACHER --from-steps 64 --to-steps 1 --out runs/distill` runs one ordinary
# training run per round (`round_<k>_<2N>_to_<N>/`: checkpoints, `--resume`, history, per-epoch
# grids, the exported student), and after each round records the student's classifier FID in
# `rounds.json` next to the teacher's DDIM at the same step count. Here: that record, or (tiny
# preset) a fresh one-round distillation of the tiny teacher from 2 steps to 1.

# %%
if args.preset == "full":
    folder = Path(args.distillation or "runs/distill")
    if not (folder / "rounds.json").exists():
        raise SystemExit(f"{folder} holds no distillation: run `keras-gen distill saved_models/ddpm --out {folder}` "
                         "first (or pass --distillation)")
else:
    from keras_gen.distill import distill
    folder = out / "distillation"
    distill(out / "tiny_teacher.keras", folder, preset="tiny", from_steps=settings["from_steps"], to_steps=1,
            fid_n=settings["n"], verbose=0)
record = json.loads((folder / "rounds.json").read_text())
series = {}
for r in record["records"]:
    series.setdefault("teacher DDIM" if r["model"] == "teacher" else "distilled students", []).append(
        (r["steps"], r["fid"]))
    extra = f", round {r['round']} trained in {r['wall_seconds'] / 60:.1f} min" if r["model"] == "student" else ""
    print(f"{r['model']:8s} {r['steps']:3d} steps: FID {r['fid']:.1f} (n={r['n']}){extra}")
plotting.fid_vs_steps(series, out / "06_fid_vs_steps.png", title="Students against the teacher's DDIM")

# %% [markdown]
# ## Students and teacher, side by side
# The same seeds: the teacher's DDIM at the student's step count (top of each pair) and the
# student (bottom). The student's few steps keep the digit the teacher's many steps would draw.

# %%
rows, labels = [], []
for round_dir in sorted(folder.glob("round_*"), key=lambda p: int(p.name.split("_")[1])):
    student = keras.saving.load_model(round_dir / "model.keras")
    rows += [trailing_samples(teacher, 8, student.ddim_steps, seed=1), student.sample(8, seed=1, progress=False)]
    labels += [f"teacher {student.ddim_steps}", f"student {student.ddim_steps}"]
plotting.image_strip(rows, out / "06_students.png", row_labels=labels,
                     title="Teacher DDIM vs distilled student at the same step count (same seeds)")
# %% [markdown]
# ## What we learned
# - Fewer DDIM steps cost quality fast: each step's straight jump misses the curved path.
# - A student trained so that its one step lands where two teacher steps land walks the same
#   path in half the steps; repeated, the rounds reach a few steps at most of the quality.
# - This run's numbers (classifier FID against step count, teacher and students):

# %%
print(f"preset {args.preset}: teacher DDIM " + ", ".join(f"{k} steps FID {v:.1f}" for k, v in teacher_fid.items())
      + f" (n={settings['n']})")
for r in record["records"]:
    if r["model"] == "student":
        print(f"  student {r['steps']} steps (round {r['round']}): FID {r['fid']:.1f} (n={r['n']}), "
              f"trained in {r['wall_seconds'] / 60:.1f} min")
print(f"figures written to {out}")
