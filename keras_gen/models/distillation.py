"""Progressive distillation: a DDPM becomes a student that samples in half the steps, round after
round, down to 1-4 network passes (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling
of Diffusion Models", Algorithm 2).

One round trains a student of N steps from a teacher of 2N steps. Both use the nested "trailing"
timestep grid t_i = round(i T / N) - 1 (keras_gen.diffusion.samplers.ddim_timesteps), so the
student's step from t_i to t_{i-1} spans exactly two teacher steps. For a training image x and a
grid point t = t_i, with z_t = alpha_t x + sigma_t eps:

1. the teacher runs two deterministic DDIM steps z_t -> z_mid -> z_next (t_mid on the 2N grid);
2. the target x~ is the clean image for which *one* DDIM step from z_t lands on z_next:
   x~ = (z_next - (sigma_next / sigma_t) z_t) / (alpha_next - (sigma_next / sigma_t) alpha_t)
   (at the last step, t_next = -1: alpha = 1, sigma = 0, so x~ = z_next), clipped to the data
   range (see ``clip_target``);
3. the student, initialised from the teacher's weights, regresses its prediction (v by default)
   on the value that x~ implies. The v loss is the paper's "SNR + 1" weighting of the x error.

`DistilledDDPM` is the student: a DDPM (same U-Net, schedule and serving contract) fixed to its
step count, with ``prediction="v"``, ``timestep_spacing="trailing"`` and deterministic DDIM. It is
what a round saves and exports (``ModelKind.servable``); `ProgressiveDistillation` is the
``keras.Model`` that ``fit`` trains, holding the frozen teacher and the student. The rounds
themselves (64 -> 32 -> ... -> 1) are run by keras_gen.distill (``keras-gen distill``).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from keras_gen.diffusion import samplers
from keras_gen.diffusion.targets import alpha_sigma, eps_and_x0, target_from_x0
from keras_gen.layers.unet import UNet
from keras_gen.models.ddpm import DDPM, DDPMKind
from keras_gen.models.kinds import get_model_kind, register_model_kind
from keras_gen.models.optimizer_build import OptimizerBuiltOnCompile
from keras_gen.models.precision import float32_model
from keras_gen.models.replicas import replica_share, step_logs


class Distilled:
    """What makes a diffusion model a distilled few-step student (mixed into a DDPM class): it
    samples with ``ddim_steps`` trailing DDIM steps, deterministically. ``teacher_steps`` records
    the step count of the teacher it matches (2 * ddim_steps). Its exports drop the all-T
    ``sample_ddpm`` signature, which it was not trained for.

    Each student class names the teacher class it is distilled from (``teacher_class``);
    `student_class` picks it for a teacher, so a new diffusion family gets students by defining
    ``class DistilledX(Distilled, X)`` in its own module."""

    teacher_class = None
    students = []  # every student class, in definition order

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Distilled.students.append(cls)

    def __init__(self, *args, teacher_steps=None, prediction="v", timestep_spacing="trailing", ddim_eta=0.0,
                 **kwargs):
        super().__init__(*args, prediction=prediction, timestep_spacing=timestep_spacing, ddim_eta=ddim_eta,
                         **kwargs)
        self.teacher_steps = None if teacher_steps is None else int(teacher_steps)

    def get_config(self):
        config = super().get_config()
        config.update(prediction=self.prediction, timestep_spacing=self.timestep_spacing,
                      teacher_steps=self.teacher_steps)
        return config

    def serving_endpoints(self):
        endpoints = super().serving_endpoints()
        endpoints.pop("sample_ddpm")
        return endpoints


@keras.saving.register_keras_serializable(package="keras_gen")
class DistilledDDPM(Distilled, DDPM):
    """A distilled student of a pixel-space DDPM (`Distilled`)."""

    kind = "distilled"
    teacher_class = DDPM


def data_kind(model_class: type) -> str:
    """The kind whose training batches a diffusion class runs on: its own, or for a student its
    teacher class's (a round's ``data_kind``)."""
    return (model_class.teacher_class if issubclass(model_class, Distilled) else model_class).kind


def student_class(teacher: DDPM) -> type:
    """The student class for ``teacher``: the one whose ``teacher_class`` comes first in the
    teacher's class hierarchy (a student of a student is of its teacher's class)."""
    for cls in type(teacher).__mro__:
        for student in Distilled.students:
            if student.teacher_class is cls:
                return student
    raise ValueError(f"no distilled student is defined for a {type(teacher).__name__} teacher")


def _float32_config(layer_config: dict) -> dict:
    """A serialized layer config without its dtype policy (the new layer takes the global one)."""
    return {k: v for k, v in layer_config.items() if k != "dtype"}


def make_student(teacher: DDPM, steps: int, prediction: str = "v", ema_decay: float | None = None,
                 seed=None) -> Distilled:
    """A student of ``steps`` steps with the teacher's architecture, schedule and data space
    (``space_kwargs``: a latent teacher's first stage is shared, not copied), its U-Net (and the
    U-Net's EMA) initialised from the teacher's EMA weights, in the global dtype policy."""
    if teacher.conditioning.conditional:
        raise ValueError("progressive distillation here takes an unconditional DDPM teacher; "
                         f"this one has num_classes={teacher.num_classes}")
    unet = UNet.from_config(_float32_config(teacher.unet.get_config()))
    student = student_class(teacher)(unet, teacher.schedule, teacher_steps=2 * steps, prediction=prediction,
                                     ema_decay=teacher.ema_decay if ema_decay is None else ema_decay,
                                     ddim_steps=steps, seed=seed, **teacher.space_kwargs())
    for net in (student.unet, student.ema_unet):
        for w, teacher_w in zip(net.weights, teacher.ema_unet.weights):
            w.assign(ops.cast(teacher_w, w.dtype))
    return student


class ProgressiveDistillation(OptimizerBuiltOnCompile, keras.Model):
    """What ``fit`` trains in one distillation round: the student learns one step of the frozen
    teacher's two (module docstring). ``sample`` draws from the student.

    Args:
        teacher: a trained DDPM (eps-, x0- or v-predicting; a previous round's student too).
        student: the `Distilled` student being trained (see `make_student`).
        seed: seed of the in-graph RNG for grid points and noise.
        clip_teacher_x0: clip the teacher's clean-image estimates to its data range
            [-x0_bound, x0_bound] ([-1, 1] for pixels) before its DDIM steps (diffusers'
            ``clip_sample``); it tames an eps teacher's x0 = (z - sigma eps) / alpha where alpha
            is near 0.
        clip_target: clip the target x~ to that range too (not in the paper). At the noisiest grid
            point x~ divides by alpha_next - (sigma_next / sigma_t) alpha_t (~0.003 for 16 steps
            of T = 1000): the shipped eps teacher's targets there spread over [-4.3, 8.7] and
            dominated the loss, while moving x~ by d moves the student's next point by only
            ~0.003 d. Clipping keeps those points from swamping the others.
        data_bank: optional (N, ...) array of clean points in the teacher's diffusion space (its
            own samples: keras_gen.distill's ``data="teacher"``). Given, each step noises rows
            drawn from it instead of the training batch (which then only sets the batch size):
            distillation needs no data beyond what the teacher generates, and no encoder.
    """

    kind = "distilled"

    def __init__(self, teacher: DDPM, student: Distilled, seed=None, clip_teacher_x0=True, clip_target=True,
                 data_bank=None, **kwargs):
        super().__init__(**kwargs)
        if teacher.schedule != student.schedule:
            raise ValueError(f"teacher and student need one schedule, got {teacher.schedule} and {student.schedule}")
        self.data_bank = None if data_bank is None else tf.constant(data_bank, tf.float32)
        self.teacher, self.student = teacher, student
        self.teacher.trainable = False
        self.steps = int(student.ddim_steps)
        self.clip_teacher_x0, self.clip_target = bool(clip_teacher_x0), bool(clip_target)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker]

    def optimizer_variables(self):
        """The student's U-Net (the teacher is frozen; EMA weights follow by update_ema)."""
        return self.student.unet.trainable_variables

    def sample(self, n, seed=0, **kwargs):
        """The student's samples (`DistilledDDPM.sample`)."""
        return self.student.sample(n, seed, **kwargs)

    def teacher_step(self, z, t, t_prev):
        """One deterministic DDIM step of the teacher's EMA network from (B,) timesteps t to t_prev."""
        teacher = self.teacher
        output = ops.cast(teacher.ema_unet((z, t), training=False), "float32")
        eps, x0 = eps_and_x0(teacher.prediction, output, z, *alpha_sigma(teacher.schedule, t, z))
        if self.clip_teacher_x0:
            x0 = ops.clip(x0, -teacher.x0_bound, teacher.x0_bound)
        return samplers.ddim_step(teacher.schedule, eps, t, t_prev, z, eta=0.0, x0=x0)

    def distillation_target(self, z, i):
        """(t, x~): the grid timestep t_i of each noisy image z and the clean image that makes one
        student DDIM step from z match two teacher steps (module docstring, step 2)."""
        schedule, n = self.teacher.schedule, self.steps
        t = samplers.trailing_grid_point(i, n, schedule.timesteps)
        t_mid = samplers.trailing_grid_point(2 * i - 1, 2 * n, schedule.timesteps)
        t_next = samplers.trailing_grid_point(i - 1, n, schedule.timesteps)
        z_next = self.teacher_step(self.teacher_step(z, t, t_mid), t_mid, t_next)
        alpha, sigma = alpha_sigma(schedule, t, z)
        last = ops.reshape(t_next < 0, (-1, 1, 1, 1))
        alpha_next, sigma_next = alpha_sigma(schedule, tf.maximum(t_next, 0), z)
        alpha_next = ops.where(last, 1.0, alpha_next)
        ratio = ops.where(last, 0.0, sigma_next / sigma)
        x_target = (z_next - ratio * z) / (alpha_next - ratio * alpha)
        bound = self.teacher.x0_bound
        return t, ops.clip(x_target, -bound, bound) if self.clip_target else x_target

    def distillation_loss(self, x0, training=True):
        """MSE of the student's prediction against the distillation target, at grid points i drawn
        uniformly from 1..N. ``x0``: a training batch, in the teacher's data space after its
        ``diffusion_data`` (a latent teacher's latents), or, with a ``data_bank``, as many of its
        rows, drawn at random."""
        batch = ops.shape(x0)[0]
        if self.data_bank is None:
            x0 = self.teacher.diffusion_data(x0)
        else:
            rows = keras.random.randint((batch,), 0, ops.shape(self.data_bank)[0], seed=self.seed_generator,
                                        dtype="int32")
            x0 = ops.take(self.data_bank, rows, axis=0)
        i = keras.random.randint((batch,), 1, self.steps + 1, seed=self.seed_generator, dtype="int32")
        noise = keras.random.normal(ops.shape(x0), seed=self.seed_generator)
        t0 = samplers.trailing_grid_point(i, self.steps, self.teacher.schedule.timesteps)
        z = self.teacher.schedule.q_sample(x0, t0, noise)
        t, x_target = self.distillation_target(z, i)
        x_target = ops.stop_gradient(x_target)
        student = self.student
        target = target_from_x0(student.prediction, x_target, z, *alpha_sigma(student.schedule, t, z))
        output = ops.cast(student.unet((z, t), training=training), "float32")
        return ops.mean(ops.square(target - output))

    def train_step(self, data):
        x0, _ = self.student.conditioning.split(data, "ProgressiveDistillation")
        with tf.GradientTape() as tape:
            loss = self.distillation_loss(x0)
            scaled = self.optimizer.scale_loss(replica_share(loss))
        weights = self.student.unet.trainable_weights
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, weights), weights))
        self.student.update_ema(self.optimizer.iterations)
        self.loss_tracker.update_state(loss)
        return step_logs({"loss": self.loss_tracker.result()})

    def test_step(self, data):
        x0, _ = self.student.conditioning.split(data, "ProgressiveDistillation")
        self.loss_tracker.update_state(self.distillation_loss(x0, training=False))
        return step_logs({"loss": self.loss_tracker.result()})


def load_teacher(path) -> DDPM:
    """The DDPM of a ``.keras`` file (a trained DDPM or an earlier round's student), in float32.

    Float32 whatever it trained in: the target divides the teacher's two-step result by
    alpha_next - (sigma_next / sigma_t) alpha_t, which is ~0.003 at the first step of a 32-step
    grid, so bfloat16's rounding of the teacher's output (~0.4%) would swamp the targets there."""
    from pathlib import Path

    if not path:
        raise ValueError("a distillation round needs a teacher: run `keras-gen distill TEACHER --out DIR` "
                         "(TEACHER: a DDPM export, .keras file or run folder)")
    teacher = keras.saving.load_model(Path(path))
    if not isinstance(teacher, DDPM):
        raise ValueError(f"{path} holds a {getattr(teacher, 'kind', type(teacher).__name__)}, not a DDPM: "
                         "only diffusion models can be distilled")
    return float32_model(teacher)


def load_data_bank(path, teacher: DDPM):
    """The teacher's samples saved at ``path`` (keras_gen.distill, ``data="teacher"``), checked
    against the teacher's diffusion shape; None without a path (the rounds train on data)."""
    import numpy as np

    if not path:
        return None
    bank = np.load(path)
    shape = tuple(teacher.noise(1, 0).shape[1:])
    if bank.ndim != 4 or bank.shape[1:] != shape or not np.isfinite(bank).all():
        raise ValueError(f"{path} holds {bank.shape} {bank.dtype} samples, not finite points of the "
                         f"teacher's diffusion space {shape}: draw them again (delete the file and --resume)")
    return bank


@register_model_kind
class DistilledKind(DDPMKind):
    """The contract of a distillation round: it trains `ProgressiveDistillation` and saves, exports
    and evaluates the student (``servable``), sampled at its own step count."""

    name = "distilled"
    display_name = "distilled DDPM"
    presets = {
        # One round of keras-gen distill (keras_gen.distill): `teacher` and `steps` are filled in
        # per round; `from_steps` is where the rounds start. Salimans & Ho train each round with
        # Adam and a learning rate decayed to 0; here a short warm-up, then cosine decay.
        "cpu": dict(teacher=None, steps=None, from_steps=64, epochs=1, limit=32_000, batch_size=32,
                    learning_rate=2e-4, warmup_steps=100, lr_decay="cosine", lr_floor=0.0,
                    ema_decay=0.995, prediction="v", precision="mixed"),
        "tiny": dict(teacher=None, steps=None, from_steps=4, epochs=2, limit=64, batch_size=16,
                     learning_rate=1e-3, ema_decay=0.9, prediction="v"),
    }
    conditional_defaults = {}
    sample_options = {"steps": DDPMKind.sample_options["steps"]}
    export_options = {}  # a student was trained for deterministic DDIM: no eta to change

    def data_options(self, config):
        """The batches of the first teacher's kind (``data_kind``, set by keras_gen.distill;
        "ddpm" in configs written before it existed)."""
        return get_model_kind(config.get("data_kind", "ddpm")).data_options(config)

    def check_config(self, config):
        if config.get("num_classes") is not None:
            raise ValueError("distillation takes an unconditional DDPM teacher; drop --num-classes")

    def build(self, config):
        teacher = load_teacher(config.get("teacher"))
        steps = config.get("steps")
        if not isinstance(steps, int) or not 1 <= steps <= teacher.schedule.timesteps // 2:
            raise ValueError(f"a round's student steps must be in [1, T/2 = {teacher.schedule.timesteps // 2}], "
                             f"got {steps!r}")
        student = make_student(teacher, steps, config.get("prediction", "v"), config.get("ema_decay"),
                               seed=config["seed"])
        return ProgressiveDistillation(teacher, student, seed=config["seed"],
                                       data_bank=load_data_bank(config.get("teacher_data"), teacher))

    def servable(self, model):
        return model.student

    def checkpointed_variables(self, model):
        """Not the frozen teacher's (nor a latent first stage the student shares with it): a resume
        loads the teacher again from its file. A teacher rebuilt from an export holds weights the
        export lacks (its raw U-Net, a latent encoder) drawn at random on every load; stored, they
        would make a resumed round differ from an uninterrupted one in weights nothing uses."""
        teacher = {id(v) for v in model.teacher.variables}
        return [v for v in model.variables if id(v) not in teacher]

    def figures(self, model, config, out):
        """teacher_vs_student.png: the same seeds through the teacher at 2N steps and the student
        at N (top and bottom rows)."""
        import numpy as np

        from keras_gen.plotting import image_grid

        n = 8
        teacher_images = trailing_samples(model.teacher, n, 2 * model.steps)
        student_images = model.student.sample(n, seed=0, progress=False)
        path = out / "teacher_vs_student.png"
        image_grid(np.concatenate([teacher_images, student_images]), path, ncols=n,
                   title=f"top: teacher, {2 * model.steps} steps; bottom: student, {model.steps}")
        return [path]

    def demo_steps(self, info):
        return int(info["config"]["ddim_steps"])

    def name_tags(self, info):
        """A student's step count: the 4-step and the 1-step students of one teacher are
        distilled_mnist_4step and distilled_mnist_1step."""
        return (f"{self.demo_steps(info)}step",)

    def evaluation_runs(self, info, *, ddim_steps=(), full_chain=True, full_chain_n=None):
        steps = int(info["config"]["ddim_steps"])
        return [dict(short_label=f"student {steps}", options={}, n=None,
                     row=dict(sampler="ddim", steps=steps, eta=0.0))], []


def trailing_diffusion_samples(ddpm: DDPM, n: int, steps: int, seed: int = 0):
    """n deterministic DDIM samples of any DDPM on the trailing grid of ``steps`` steps, in its
    diffusion space (a latent DDPM's latents): what a student of steps / 2 steps learns to match."""
    x_T = ddpm.noise(n, seed)
    return samplers.sample(ddpm.eps_fn(), x_T, ddpm.schedule, sampler="ddim", steps=steps, eta=0.0, seed=seed,
                           progress=False, prediction=ddpm.prediction, spacing="trailing")


def trailing_samples(ddpm: DDPM, n: int, steps: int, seed: int = 0):
    """The images of `trailing_diffusion_samples`."""
    return ddpm.to_images(trailing_diffusion_samples(ddpm, n, steps, seed)).numpy()
