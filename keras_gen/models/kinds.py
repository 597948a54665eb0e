"""The model contract: what a generative model family declares so the rest of keras_gen can use it.

keras_gen's training job, CLI, export, resume, sampling and evaluation never branch on the kind
of model. Each family declares, in its own module, one ``ModelKind`` subclass registered with
``@register_model_kind``; everything else reads it:

========================  =====================================================================
``name``                  the kind's name (``keras-gen train <name>``; the model class's ``kind``)
``display_name``          how tables and figures name the family (default: the name in capitals)
``presets``               {preset name: flat config dict}; ``"tiny"`` is required (tests)
``conditional_defaults``  config keys added when ``num_classes`` is set
``data_options(config)``  keyword arguments of ``make_dataset``: how raw uint8 batches become
                          the model's inputs (value range, padding, binarisation)
``build(config)``         the model (a ``keras.Model`` with ``sample(n, seed, ...)``,
                          ``get_config()`` and ``serving_endpoints()``; see keras_gen.export)
``compile(model, config)`` its optimizers; ``optimizers(model)`` names them for checkpoints
``checkpointed_variables(model)`` what a resume checkpoint stores of the model (default: all;
                          a distillation round leaves out its frozen teacher)
``trainer(model, config)`` an optional custom training loop (an object with ``fit`` like the
                          DCGAN's article loop); None means Keras ``fit``
``servable(model)``       the model a run saves, exports and samples (default: the one ``fit``
                          trains; a distillation round trains teacher + student, serves the student)
``figures(model, config, out)`` the extra figures a finished run draws
``sample_options``        {option: checker} the kind's ``sample()`` accepts beyond n and seed,
                          checked the same way for a ``.keras`` file and for an export
``export_options``        {option: setter(model, value)}: serving defaults ``keras-gen export``
                          may change before exporting (a DDPM's ``ddim_eta``)
``export_call(info, options)`` which export signature serves those options, with which inputs
``network_passes(info, options)`` network evaluations per sample of such a call
``evaluation_runs(info, ...)`` the rows ``keras-gen evaluate`` draws for one model
``demo_figures(sampler, out, seed)`` extra figures ``keras-gen demo`` draws from a shipped model
``name_tags(info)``       what tells two exports of this kind on one dataset apart in a shipped
                          model's name (keras_gen.zoo): none by default, a student's steps
``likelihood(model, images)`` rows of the kind's likelihood bounds on uint8 test images
                          (keras_gen.likelihood.summary_row); ``no_likelihood`` says why a kind
                          has none (None when it has one); ``likelihood_unavailable(info)`` why
                          one export cannot give it (default: ``no_likelihood``)
========================  =====================================================================

A new family is its module (model + kind), its presets, its tests and its tutorial. A kind
defined outside the package registers the same way; the CLI imports the modules named in
``$KERAS_GEN_PLUGINS`` (comma-separated) before it reads the registry, so their kinds are
trainable, exportable and evaluable from the command line.
"""

from __future__ import annotations

import abc
import importlib
import os
from pathlib import Path

import keras

PLUGINS_ENV = "KERAS_GEN_PLUGINS"
_REGISTRY: dict[str, "ModelKind"] = {}


class ModelKind(abc.ABC):
    """Base class of a model family's declaration (see the module docstring for the fields)."""

    name: str = ""
    display_name: str = ""
    presets: dict = {}
    conditional_defaults: dict = {}
    sample_options: dict = {}
    export_options: dict = {}

    # ----------------------------------------------------------------- training
    def data_options(self, config: dict) -> dict:
        """make_dataset keyword arguments for this kind (default: images in [0, 1])."""
        return {"value_range": "0_1"}

    @abc.abstractmethod
    def build(self, config: dict) -> keras.Model:
        """The model for a preset-style config."""

    def compile(self, model, config: dict):
        """Default: Adam at the config's learning rate."""
        model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]))

    def optimizers(self, model) -> dict:
        """{name: optimizer} of the model's own optimizers (checkpointed with the weights)."""
        optimizer = getattr(model, "optimizer", None)
        return {} if optimizer is None else {"optimizer": optimizer}

    def optimizer_targets(self, model) -> list:
        """[(optimizer, variables it trains)], to build the optimizers before a restore."""
        return [(optimizer, model.trainable_variables) for optimizer in self.optimizers(model).values()]

    def checkpointed_variables(self, model) -> list:
        """The model's variables a resume checkpoint stores (beside its optimizers'): all of them
        by default. A kind whose model holds a frozen part that a resume loads again from its own
        file leaves that part out."""
        return list(model.variables)

    def trainer(self, model, config: dict):
        """A custom training loop for this config, or None for Keras fit."""
        return None

    def servable(self, model) -> keras.Model:
        """The model a run saves as model.keras, exports and draws sample grids from."""
        return model

    def check_config(self, config: dict):
        """Kind-specific checks of a full config (raise ValueError naming the key)."""

    def figures(self, model, config: dict, out: Path) -> list:
        """Extra figures of a finished run, written into ``out``; returns their paths."""
        return []

    # ----------------------------------------------------------------- sampling and serving
    def check_sample_options(self, options: dict, info: dict) -> dict:
        """``options`` checked against ``sample_options`` and the model's config ``info``."""
        unknown = sorted(set(options) - set(self.sample_options))
        if unknown:
            allowed = ", ".join(sorted(self.sample_options)) or "none"
            raise ValueError(f"a {self.name} model does not take {', '.join(unknown)} (options: {allowed})")
        return {key: self.sample_options[key](value, info) for key, value in options.items()
                if value is not None}

    def apply_export_options(self, model, options: dict):
        """Set the serving defaults in ``options`` on ``model`` (``export_options``), or ValueError
        naming an option this kind does not have."""
        for key, value in options.items():
            if key not in self.export_options:
                allowed = ", ".join(sorted(self.export_options)) or "none"
                raise ValueError(f"{key} does not apply to a {self.name} export (options: {allowed})")
            self.export_options[key](model, value)

    def export_call(self, info: dict, options: dict) -> tuple[str, dict]:
        """(signature name, {input: (dtype, value)}) of the export call that serves the checked
        ``options`` besides num_images and seed: ``sample_class`` for a label, else
        ``serving_default``."""
        if "label" in options:
            return "sample_class", {"label": ("int32", options["label"])}
        return "serving_default", {}

    def network_passes(self, info: dict, options: dict | None = None) -> int:
        """Network evaluations per sample of a call with ``options`` (default one)."""
        return 1

    def demo_figures(self, sampler, out: Path, seed: int) -> list:
        """Extra figures ``keras-gen demo`` draws from a shipped model (a keras_gen.sampling
        Sampler) into ``out``; returns their paths."""
        return []

    def name_tags(self, info: dict) -> tuple[str, ...]:
        """Words a shipped export's name carries besides its kind, dataset and conditioning
        (keras_gen.zoo.model_name), from its assets ``info``; default none."""
        return ()

    #: Why this kind reports no likelihood (``keras-gen evaluate --likelihood`` prints it); None
    #: for a kind that overrides ``likelihood``.
    no_likelihood: str | None = "no likelihood is implemented for this kind"

    def likelihood(self, model, images, *, seed: int = 0, info: dict | None = None) -> list[dict]:
        """The kind's bounds on the log-likelihood of uint8 ``images`` (N, 28, 28) for a Keras
        ``model`` of this kind: a list of keras_gen.likelihood.summary_row dicts (bound, value,
        stderr, n, unit, data), computed with seeded randomness. ``info``: the export's assets when
        the model was rebuilt from an export (which holds only what its signatures read).
        Default: ValueError(no_likelihood)."""
        raise ValueError(f"{self.name}: {self.no_likelihood}")

    def likelihood_unavailable(self, info: dict) -> str | None:
        """Why the export with assets ``info`` cannot give this kind's likelihood, or None when it
        can (default: the kind's ``no_likelihood``; a kind whose bounds need a signature that older
        exports lack says so)."""
        return self.no_likelihood

    def label(self) -> str:
        """The family's name in tables and figures: ``display_name``, else the name in capitals."""
        return self.display_name or self.name.upper()

    def evaluation_runs(self, info: dict, *, ddim_steps=(), full_chain=True, full_chain_n=None):
        """(runs, notes): the rows ``keras-gen evaluate`` draws for one model, each
        {short_label, options (sample options), n (None: the report's n), row (extra row fields),
        slow (optional: time it once, not speed_repeats times)}, and notes on what was skipped. Default: one row with no options. ``ddim_steps``,
        ``full_chain`` and ``full_chain_n`` are the step counts / full-chain choices of iterative
        samplers."""
        return [dict(short_label=self.name.upper(), options={}, n=None, row={})], []


def register_model_kind(kind):
    """Register a ModelKind subclass (decorator) or instance under its ``name``; returns it."""
    instance = kind() if isinstance(kind, type) else kind
    if not isinstance(instance, ModelKind) or not instance.name:
        raise TypeError(f"register_model_kind takes a ModelKind with a name, got {kind!r}")
    if "tiny" not in instance.presets:
        raise ValueError(f"model kind {instance.name!r} needs a 'tiny' preset (the tests train it)")
    _REGISTRY[instance.name] = instance
    return kind


def load_plugins():
    """Import the modules named in $KERAS_GEN_PLUGINS (each registers its kinds)."""
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"${PLUGINS_ENV} names {module!r}, which cannot be imported: {exc}") from exc


def _builtin():
    import keras_gen.models  # noqa: F401  (registers the built-in kinds)
    load_plugins()


def model_kinds() -> list[str]:
    """The registered kind names, built-in (the article's order) then plugins, in registration order."""
    _builtin()
    return list(_REGISTRY)


def get_model_kind(name: str) -> ModelKind:
    """The registered ModelKind called ``name``; ValueError listing the names otherwise."""
    _builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model kind {name!r}; choose from {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def kind_of(model) -> ModelKind:
    """The ModelKind of a model instance (by its class's ``kind`` attribute)."""
    return get_model_kind(getattr(model, "kind", type(model).__name__.lower()))


def model_optimizers(model) -> dict:
    return kind_of(model).optimizers(model)


def optimizer_targets(model) -> list:
    return kind_of(model).optimizer_targets(model)
