"""Named configurations per model kind: "article" (the article's hyperparameters), "cpu" (good
results in minutes on a 2-core CPU, chosen by measurement), "tiny" (seconds, for tests).

Each kind declares its presets in its own module (``ModelKind.presets``, keras_gen.models.kinds);
this module adds the keys every kind shares and validates the values before any work starts.
Every preset trains a class-conditional model with ``num_classes=10`` (``keras-gen train ...
--num-classes 10``): the dataset then yields (image, label) batches, and the kind's
``conditional_defaults`` are added (the DDPM's ``label_dropout`` and ``guidance``).

A preset is a flat dict; ``get_preset(kind, name, **overrides)`` returns a copy with overrides
applied (None values ignored), validated.
"""

from __future__ import annotations

import math
import numbers

from keras_gen.diffusion.samplers import MAX_SEED  # seeds are int32 in every graph and export

COMMON_DEFAULTS = dict(dataset="mnist", seed=0, limit=None, loop="fit", precision="float32", num_classes=None)
POSITIVE_KEYS = ("epochs", "batch_size", "latent_dim", "limit", "timesteps", "dim")
MAX_EPOCHS = 100_000  # a bound on --epochs that no real run reaches (the article's longest is 200)


def preset_names(kind):
    from keras_gen.models.kinds import get_model_kind
    return sorted(get_model_kind(kind).presets)


def _positive_int(key, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")


def check_common(config: dict):
    """The checks every kind's config gets (ValueError naming the key)."""
    for key in POSITIVE_KEYS:
        if config.get(key) is not None:
            _positive_int(key, config[key])
    if config.get("epochs") is not None and config["epochs"] > MAX_EPOCHS:
        raise ValueError(f"epochs must be at most {MAX_EPOCHS}, got {config['epochs']}")
    seed = config.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, {MAX_SEED}], got {seed!r}")
    lr = config.get("learning_rate")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, numbers.Real)
                           or not math.isfinite(lr) or lr <= 0):
        raise ValueError(f"learning_rate must be a finite positive number, got {lr!r}")
    num_classes = config.get("num_classes")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral)
                                    or num_classes < 2):
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")


def get_preset(kind: str, name: str = "cpu", **overrides) -> dict:
    """The preset ``name`` for model ``kind`` with non-None overrides applied, validated."""
    from keras_gen.models.kinds import get_model_kind

    model_kind = get_model_kind(kind)
    if name not in model_kind.presets:
        raise ValueError(f"unknown preset {name!r} for {kind}; choose from {', '.join(preset_names(kind))}")
    config = {**COMMON_DEFAULTS, **model_kind.presets[name], "preset": name}
    config.update({k: v for k, v in overrides.items() if v is not None})
    if config["num_classes"] is not None:
        config = {**model_kind.conditional_defaults, **config}
    check_common(config)
    model_kind.check_config(config)
    return config
