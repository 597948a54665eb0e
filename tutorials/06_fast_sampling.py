# %% [markdown]
# # Tutorial 6: fast sampling, from DDIM strides to distilled 1-4 step students
#
# The article ends on the generative trilemma: its DDPM draws the best samples but needs one
# network pass per step, and it names strided sampling (DDIM) as the way out. This tutorial
# measures how far strides go, then follows progressive distillation (Salimans & Ho 2022,
# "Progressive Distillation for Fast Sampling of Diffusion Models") round by round, on the
# model keras_gen distilled and ships: the latent DDPM (tutorial 8) as the teacher and its
# 4-step student.
#
# Article section: "Conclusion" of Cheigh & Yamada, *Generating Images using VAEs, GANs, and
# Diffusion Models* (Towards Data Science, 2023,
# https://towardsdatascience.com/generating-images-using-vaes-gans-and-diffusion-models-48963ddeb2b2).
# Run it as a script or cell by cell (`# %%` cells, or notebooks/06_fast_sampling.ipynb):
#
#     python tutorials/06_fast_sampling.py --preset full --out outputs/tutorial_fast   # shipped models, recorded rounds
#     python tutorials/06_fast_sampling.py --preset tiny --out /tmp/fast               # what the tests run
#
# The full preset needs no training: its teacher is the shipped `latent_ddpm_mnist`, its student
# the shipped `distilled_latent_mnist_4step`, and the rounds are the record the distillation
# wrote (`benchmarks/results/distillation/latent_v_rounds.json` in the keras_gen checkout). To
# follow rounds you ran yourself, pass their folder (distil from the training run, whose
# `model.keras` holds the encoder that turns training digits into latents; README, "Distilling
# the latent DDPM"):
#
#     keras-gen distill runs/latent/latent_ddpm_v/model.keras --from-steps 64 --to-steps 1 --epochs 2 --out runs/distill_v
#     python tutorials/06_fast_sampling.py --preset full --distillation runs/distill_v
#
# (each round's training time is in the record printed below; `--resume` continues an interrupted one).
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
from keras_gen.diffusion import ddim_step
from keras_gen.diffusion.samplers import trailing_grid_point
from keras_gen.diffusion.targets import alpha_sigma
from keras_gen.distill import measure_fid
from keras_gen.models.distillation import ProgressiveDistillation, make_student, student_class, trailing_samples
from keras_gen.sampling import model_from_export
from keras_gen.zoo import resolve_model_path

SETTINGS = {
    # n: samples per FID (the record's n for "full"); steps: DDIM step counts of the teacher's
    # curve; demo_steps, demo_step: the student grid and the step i of the "two steps, one" cell;
    # from_steps: where the tiny preset's own distillation starts
    "full": dict(n=1000, steps=(1, 2, 4, 8, 16, 32, 64), demo_steps=4, demo_step=2),
    "tiny": dict(n=32, steps=(1, 2), demo_steps=4, demo_step=2, from_steps=2),
}
# The record of the shipped student's distillation, in the checkout keras_gen is imported from
# (`pip install -e .`; a notebook kernel has no __file__ to find it by).
RECORD = (Path(keras_gen.__file__).resolve().parent.parent / "benchmarks" / "results" / "distillation"
          / "latent_v_rounds.json")
parser = argparse.ArgumentParser()
parser.add_argument("--preset", default="full", choices=sorted(SETTINGS))
parser.add_argument("--distillation", help="full preset: a `keras-gen distill` folder of the shipped teacher whose "
                    "rounds.json and round folders to show (default: the recorded rounds and the shipped student)")
parser.add_argument("--out", default="outputs/tutorial_fast")
args, _ = parser.parse_known_args()
settings = SETTINGS[args.preset]
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## The teacher: a latent DDPM
# With `--preset full` the teacher is the shipped latent DDPM (1000 timesteps on the cosine
# schedule, trained to predict v = alpha eps - sigma x on the 8x8x4 latents of a frozen
# autoencoder, which it holds and decodes with). Its export has no `.keras` file: `keras_gen.sampling.model_from_export` rebuilds the
# Keras model from the export's config and weights and checks that it draws the export's images.
# (`keras_gen.from_preset` returns a sampler that draws through the export's signatures: right
# for drawing images, but it has no U-Net to run a single DDIM step with.)
# The tiny preset (what the tests run) builds an untrained tiny latent DDPM on an untrained tiny
# first stage instead (scale factor 1: an untrained encoder's latents would set no useful one):
# every step below runs the same code, on noise.
#
# What one sampling step costs: one U-Net pass on the latent; the decoder runs once, after the
# last step. So N steps are N + 1 network passes (what keras_gen records as `network_passes`).
# The two networks' sizes are printed here; the last cell splits a sample's measured time into
# the part each step adds and the fixed rest (the decoder pass included).

# %%
if args.preset == "full":
    teacher = model_from_export(resolve_model_path("latent_ddpm_mnist"))
else:
    keras_gen.get_model_kind("autoencoder").build(keras_gen.get_preset("autoencoder", "tiny")).save(
        out / "tiny_first_stage.keras")
    teacher = keras_gen.get_model_kind("latent_ddpm").build(keras_gen.get_preset(
        "latent_ddpm", "tiny", first_stage=str(out / "tiny_first_stage.keras"), scale_factor=1.0))
    teacher.save(out / "tiny_teacher.keras")
teacher_kind = keras_gen.get_model_kind(teacher.kind)
teacher_info = {"config": teacher.get_config()}
print(f"teacher: {type(teacher).__name__}, T={teacher.schedule.timesteps}, predicts {teacher.prediction}, "
      f"latent {teacher.first_stage.latent_shape}, scale factor {teacher.scale_factor:.3f}")
print(f"U-Net {teacher.ema_unet.count_params():,} parameters, decoder "
      f"{teacher.first_stage.decoder.count_params():,}; network passes of DDIM with 4 steps: "
      f"{teacher_kind.network_passes(teacher_info, {'steps': 4})}")

# %% [markdown]
# ## DDIM steps against quality
# Deterministic DDIM (eta 0) on the "trailing" grid t_i = round(i T / N) - 1 (it always starts
# at t = T - 1, and the grid of N steps is every other point of the grid of 2N). Each step
# jumps along the curved path from noise to data using one local prediction, so the fewer the
# steps, the coarser the path is followed: look at the rows of the figure. The samples below are drawn
# and scored as `keras-gen distill` scores its rounds (`measure_fid`: batches of 250, seeded by
# their first index), so the full preset's numbers can be set beside the record's.
# The teacher's sampler here and in `keras-gen distill`'s record; its last line, `to_images`,
# decodes a latent teacher's samples:

# %%
print(inspect.getsource(trailing_samples))

# %%
def warm_up(sample_fn):
    """Untimed calls at the batch sizes drawn below (8-image rows, measure_fid's batches): a
    model's compiled sampling step traces for the first shapes it sees, and the samples/s
    measured afterwards should not include that one-off cost."""
    for size in (8, min(250, settings["n"])):
        sample_fn(size, 0)


warm_up(lambda n, seed: trailing_samples(teacher, n, 1, seed))
teacher_fid, grid = {}, []
for steps in settings["steps"]:
    teacher_fid[steps] = measure_fid(lambda n, seed: trailing_samples(teacher, n, steps, seed), settings["n"])
    grid.append(trailing_samples(teacher, 8, steps, seed=1))
    print(f"teacher DDIM {steps:3d} steps: classifier FID {teacher_fid[steps]['fid']:.1f} (n={settings['n']}), "
          f"{teacher_fid[steps]['samples_per_s']:.1f} samples/s")
plotting.image_strip(grid, out / "06_ddim_steps.png", row_labels=[f"{s} steps" for s in settings["steps"]],
                     title="The teacher's deterministic DDIM: the same 8 seeds at each step count")

# %% [markdown]
# ## Why distillation works: one student step for two teacher steps
# Take a clean latent x (in training, a digit's latent: the batch goes through the teacher's
# `diffusion_data`, its encoder), noise it to z_t at a point t of the student's grid, and run the
# teacher's two DDIM steps z_t -> z_mid -> z_next. DDIM is deterministic, so there is one clean
# latent x~ for which a *single* DDIM step from z_t lands exactly on z_next:
#
#     x~ = (z_next - (sigma_next / sigma_t) z_t) / (alpha_next - (sigma_next / sigma_t) alpha_t).
#
# The student learns to predict x~ (as v = alpha eps - sigma x, Salimans & Ho's parameterisation,
# well defined even at t = T - 1 where an eps prediction would divide by alpha ~ 0). Once it does,
# its N steps walk the teacher's 2N-step path; then it becomes the next round's teacher. Nothing
# here is specific to pixels: for a latent teacher every quantity is a latent, and x~ is clipped
# to the latents' range (`x0_bound`) instead of the pixels' [-1, 1]. The target in keras_gen's code:

# %%
print(inspect.getsource(ProgressiveDistillation.distillation_target))

# %% [markdown]
# The pieces at step i of a student with `demo_steps` steps (the shipped student's grid), every
# latent decoded by the teacher's first stage (`to_images`) to be seen. The clean latent x is one
# the teacher draws itself (its deterministic DDIM with the most steps above): the shipped export
# holds only the decoder, since none of its signatures encodes, so the teacher rebuilt from it has
# no trained encoder to turn a test digit into a latent.

# %%
distillation = ProgressiveDistillation(teacher, make_student(teacher, steps=settings["demo_steps"]))
_, chain = teacher.sample(1, seed=2, steps=max(settings["steps"]), eta=0.0, return_trajectory=True, progress=False)
x = tf.constant(chain[-1])
n_demo, i_demo, T = settings["demo_steps"], settings["demo_step"], teacher.schedule.timesteps
t, t_mid, t_next = (int(trailing_grid_point(tf.constant([k]), n, T)[0])
                    for k, n in ((i_demo, n_demo), (2 * i_demo - 1, 2 * n_demo), (i_demo - 1, n_demo)))
z = teacher.schedule.q_sample(x, tf.constant([t]), tf.random.stateless_normal(tf.shape(x), seed=[0, 0]))
z_mid = distillation.teacher_step(z, tf.constant([t]), tf.constant([t_mid]))
z_next = distillation.teacher_step(z_mid, tf.constant([t_mid]), tf.constant([t_next]))
_, x_target = distillation.distillation_target(z, tf.constant([i_demo]))
alpha, sigma = alpha_sigma(teacher.schedule, tf.constant([t]), z)
one_step = ddim_step(teacher.schedule, (z - alpha * x_target) / sigma, tf.constant([t]), tf.constant([t_next]), z,
                     x0=x_target)
print(f"student step {i_demo} of {n_demo}: t={t} -> {t_next}, the teacher's two steps t={t} -> {t_mid} -> {t_next}")
print(f"x~ reaches {float(tf.reduce_max(tf.abs(x_target))):.2f} (clip at {teacher.x0_bound}); one student step "
      f"with x~ lands on the teacher's two: max |difference| {float(tf.reduce_max(tf.abs(one_step - z_next))):.2e}")
strip = [teacher.to_images(a).numpy() for a in (x, z, z_mid, z_next, x_target)]
plotting.image_strip([np.concatenate(strip)], out / "06_two_steps_one.png",
                     col_labels=["clean latent x", f"z at t={t}", f"teacher: t={t_mid}", f"teacher: t={t_next}",
                                 "target x~"],
                     title="One step that lands where the teacher's two do (latents decoded)")

# %% [markdown]
# ## The rounds
# `keras-gen distill TEACHER --from-steps 64 --to-steps 1 --out DIR` runs one ordinary training
# run per round (`round_<k>_<2N>_to_<N>/`: checkpoints, `--resume`, history, per-epoch grids,
# the exported student), and after each round records the student's classifier FID in
# `rounds.json` next to the teacher's DDIM at the same step count, with the protocol used above
# (so this run's teacher curve can be laid over the record's). Full preset: the record of the
# distillation that made the shipped student (or `--distillation DIR`'s); tiny preset: a fresh
# one-round distillation of the tiny teacher from 2 steps to 1.

# %%
if args.preset == "tiny":
    from keras_gen.distill import distill
    folder = out / "distillation"
    distill(out / "tiny_teacher.keras", folder, preset="tiny", from_steps=settings["from_steps"], to_steps=1,
            fid_n=settings["n"], verbose=0)
    record_path = folder / "rounds.json"
else:
    folder = Path(args.distillation) if args.distillation else None
    record_path = folder / "rounds.json" if folder else RECORD
    if not record_path.exists():
        raise SystemExit(f"{record_path} is missing: pass --distillation DIR, a `keras-gen distill ... --out DIR` "
                         "folder of this teacher (or run from a keras_gen checkout, which holds the record)")
record = json.loads(record_path.read_text())
print(f"rounds record: {record_path} (teacher {record['teacher']})")
series = {}
for r in record["records"]:
    series.setdefault("teacher DDIM (record)" if r["model"] == "teacher" else "students (record)", []).append(
        (r["steps"], r["fid"]))
    extra = f", round {r['round']} trained in {r['wall_seconds'] / 60:.1f} min" if r["model"] == "student" else ""
    print(f"{r['model']:8s} {r['steps']:3d} steps: FID {r['fid']:.1f} (n={r['n']}){extra}")
series["teacher DDIM (this run)"] = [(s, m["fid"]) for s, m in teacher_fid.items()]
plotting.fid_vs_steps(series, out / "06_fid_vs_steps.png", title="Students against the teacher's DDIM",
                      xlabel="sampling steps (U-Net passes; + 1 decoder pass)")

# %% [markdown]
# ## Students and teacher, side by side
# The students: each round's (the tiny preset's, or `--distillation DIR`'s), or the shipped
# 4-step student. The same seeds go through the teacher's DDIM with the most steps above (64,
# where the shipped distillation started), through the teacher's DDIM at the student's step
# count, and through the student: compare how much of the many-step digit each few-step row
# keeps. Each student is scored with the protocol used for the teacher. The record scored each
# round's student from its training file (the cpu preset trains in mixed bfloat16) while the
# shipped student is its float32 export, so the two FIDs need not agree to the last digit.

# %%
if folder is not None:
    students = [keras.saving.load_model(d / "model.keras")
                for d in sorted(folder.glob("round_*"), key=lambda p: int(p.name.split("_")[1]))]
else:
    students = [model_from_export(resolve_model_path("distilled_latent_mnist_4step"))]
for student in students:
    if not isinstance(student, student_class(teacher)) or student.schedule != teacher.schedule:
        raise SystemExit(f"a {type(student).__name__} is not a student of this {type(teacher).__name__} teacher")
start = max(settings["steps"])
rows, labels, student_fid = [trailing_samples(teacher, 8, start, seed=1)], [f"teacher {start}"], {}
for student in students:
    steps = student.ddim_steps
    warm_up(lambda n, seed: student.sample(n, seed, progress=False))
    student_fid[steps] = measure_fid(lambda n, seed: student.sample(n, seed, progress=False), settings["n"])
    rows += [trailing_samples(teacher, 8, steps, seed=1), student.sample(8, seed=1, progress=False)]
    labels += [f"teacher {steps}", f"student {steps}"]
    print(f"student {steps} steps: classifier FID {student_fid[steps]['fid']:.1f} (n={settings['n']}), "
          f"{student_fid[steps]['samples_per_s']:.1f} samples/s, network passes "
          f"{keras_gen.get_model_kind(student.kind).network_passes({'config': student.get_config()})}")
plotting.image_strip(rows, out / "06_students.png", row_labels=labels,
                     title="Teacher DDIM vs distilled student (same seeds)")

# %% [markdown]
# ## What we learned
# - Fewer DDIM steps cost quality fast: each step's straight jump misses the curved path.
# - A student trained so that its one step lands where two teacher steps land walks the same
#   path in half the steps; repeated, the rounds reach a few steps. Whether it keeps the
#   teacher's quality is what the numbers below say: the recorded rounds, and this run's scores
#   of the teacher and the students with the same protocol.
# - On a latent teacher everything happens on latents; the decoder runs once per sample, so a
#   student of N steps costs N U-Net passes plus one decoder pass. The line through the
#   teacher's timings at its fewest and most steps splits a sample's time into what each step
#   adds and the fixed rest (the decoder pass included).

# %%
recorded = {(r["model"], r["steps"]): r["fid"] for r in record["records"]}


def beside_record(model, steps, measured):
    fid = recorded.get((model, steps))
    return f"FID {measured['fid']:.1f}" + ("" if fid is None else f" (record {fid:.1f})")


print(f"preset {args.preset}, n={settings['n']} per FID; samples/s are wall clock and depend on what else runs")
print("teacher DDIM: " + ", ".join(f"{s} steps {beside_record('teacher', s, m)}" for s, m in teacher_fid.items()))
few, many = min(teacher_fid), max(teacher_fid)
seconds = {s: 1 / teacher_fid[s]["samples_per_s"] for s in (few, many)}
per_step = (seconds[many] - seconds[few]) / (many - few)
print(f"teacher time per sample: {1e3 * per_step:.2f} ms per step + {1e3 * (seconds[few] - few * per_step):.2f} ms "
      f"fixed (from its {few}- and {many}-step timings)")
for steps, m in student_fid.items():
    print(f"student {steps} steps: {beside_record('student', steps, m)}, {m['samples_per_s']:.1f} samples/s "
          f"against the teacher's {start}-step DDIM {teacher_fid[start]['samples_per_s']:.1f} "
          f"({m['samples_per_s'] / teacher_fid[start]['samples_per_s']:.1f}x)")
print(f"figures written to {out}")
