"""Optimizer pieces the model families share: the variables built in ``compile`` and the
learning-rate schedule of the presets.

Why build in ``compile``, before the first train step is traced:

Keras 3 (TensorFlow backend, no distribution strategy) creates the optimizer's slot variables
inside the first traced ``train_step``, and a ``tf.function`` that creates variables is traced
twice. For the U-Net that doubles the start-up of every ``fit``: the tiny DDPM's first train step
took 18.3 CPU-s with the lazy build and 9.7 CPU-s with this one (2-core AVX-512 CPU, beside a
nice'd training). Adam's ``build`` returns at once when already built, so Keras' own later calls
(``compile_from_config``, the CLI's resume) are unchanged.
"""

import keras


class OptimizerBuiltOnCompile:
    """Mixin (before ``keras.Model`` in the bases) for a model trained by ``self.optimizer``:
    ``compile`` also builds that optimizer on ``optimizer_variables()``."""

    def optimizer_variables(self) -> list:
        """The variables ``self.optimizer`` trains (default: all trainable ones)."""
        return self.trainable_variables

    def compile(self, *args, **kwargs):
        super().compile(*args, **kwargs)
        if getattr(self, "optimizer", None) is not None and not self.optimizer.built:
            self.optimizer.build(self.optimizer_variables())

    def compile_from_config(self, config):
        """Compile from a ``.keras`` file's compile config, as Keras does for models whose
        ``compile`` is not overridden (it skips the others, which would load uncompiled)."""
        self.compile(**keras.saving.deserialize_keras_object(config))


def learning_rate_schedule(config: dict):
    """The preset's learning rate: a linear warm-up over ``warmup_steps`` to ``learning_rate``,
    then (``lr_decay="cosine"``) cosine decay to ``lr_floor`` (default 0.05) times it over the
    rest of the run (``epochs * steps_per_epoch``); the plain rate when neither is set."""
    lr = config["learning_rate"]
    warmup = config.get("warmup_steps", 0)
    decay_steps = 0
    if config.get("lr_decay") == "cosine":
        decay_steps = max(1, config["epochs"] * config["steps_per_epoch"] - warmup)
    if not (warmup or decay_steps):
        return lr
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else lr, decay_steps=decay_steps or 10**9,
        warmup_target=lr if warmup else None, warmup_steps=warmup,
        alpha=config.get("lr_floor", 0.05) if decay_steps else 1.0)
