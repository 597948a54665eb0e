"""Shipped models by name, keras-hub style: ``keras_gen.from_preset("ddpm_mnist")``.

A shipped model is an export in one of the shipped-model folders (keras_gen.locations:
``$KERAS_GEN_MODELS``, the checkout's saved_models/, or the copy a ``pip install`` made). Its
name comes from its own ``assets/keras_gen.json``, not from a list kept here, so shipping a new
export is copying its folder into saved_models/ and nothing else::

    <kind>_<dataset>[_<the kind's tags>][_conditional]

e.g. ``vae_mnist``, ``ddpm_fashion_mnist``, ``ddpm_mnist_conditional`` (an export with
``num_classes``), ``distilled_mnist_4step`` (a kind adds its tags through
``ModelKind.name_tags``). The folder's own name plays no part. An export whose assets record no
dataset (one not made from a training run) has no name; pass its path instead. Two exports of
one folder with the same name are refused (ValueError naming both); across folders the first
place wins, as for the classifiers.

The CLI accepts a name wherever it takes an export path (``keras-gen sample ddpm_mnist``):
`resolve_model_path` turns a name into the export's folder and leaves paths alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from keras_gen.locations import MODELS_ENV, describe_places, models_dirs

# What a name looks like: lower-case words joined by "_". Anything else (a "/", a ".keras"
# suffix, capitals) is a path.
NAME_PATTERN = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")


@dataclass(frozen=True)
class ShippedModel:
    """One named export: ``name``, ``path`` (its folder) and ``info`` (its assets JSON)."""

    name: str
    path: Path
    info: dict

    @property
    def kind(self) -> str:
        return self.info["kind"]

    @property
    def dataset(self) -> str:
        return self.info["dataset"]

    @property
    def num_classes(self) -> int | None:
        """The classes a conditional model draws (``--label``), None for an unconditional one."""
        return self.info.get("num_classes")


class UnknownModelName(ValueError):
    """A name that no shipped export has; ``names`` lists the known ones. The message is one
    line (the CLI prints it as its error)."""

    def __init__(self, name: str, names: list[str]):
        self.name, self.names = name, list(names)
        if names:
            message = (f"unknown model name {name!r}; known names: {', '.join(sorted(names))} "
                       "(`keras-gen models` describes them; or give an export's path)")
        else:
            message = f"unknown model name {name!r}: {no_models_found()}"
        super().__init__(message)


def no_models_found() -> str:
    """Why there are no names to choose from: the places looked in, and what to do instead."""
    return (f"no shipped models were found (looked in {describe_places()}); give an export's path, or "
            f"set ${MODELS_ENV} to a folder of exports")


def model_name(info: dict) -> str | None:
    """The name of an export with these assets (see the module docstring), None without a dataset."""
    from keras_gen.models.kinds import get_model_kind

    dataset = info.get("dataset")
    if not dataset:
        return None
    words = [info["kind"], dataset, *get_model_kind(info["kind"]).name_tags(info)]
    if info.get("num_classes") is not None:
        words.append("conditional")
    return "_".join(words)


def _folder_models(folder: Path) -> dict[str, ShippedModel]:
    """{name: ShippedModel} of the named exports directly inside ``folder``."""
    from keras_gen.export import is_export, read_export_info

    found: dict[str, ShippedModel] = {}
    for path in sorted(folder.iterdir()):
        if not is_export(path):
            continue
        info = read_export_info(path)
        name = model_name(info)
        if name is None:
            continue
        if name in found:
            raise ValueError(f"two shipped exports are both named {name!r}: {found[name].path} and {path}; "
                             "keep one of them in the folder")
        found[name] = ShippedModel(name, path, info)
    return found


def shipped_models() -> list[ShippedModel]:
    """Every named export of the shipped-model folders, in the model registry's kind order (the
    article's: VAE, DCGAN, DDPM, ...), then by name."""
    from keras_gen.models.kinds import model_kinds

    models: dict[str, ShippedModel] = {}
    for _, folder in models_dirs():
        if folder.is_dir():
            for name, model in _folder_models(folder).items():
                models.setdefault(name, model)  # the first place wins
    order = {kind: i for i, kind in enumerate(model_kinds())}
    return sorted(models.values(), key=lambda m: (order.get(m.kind, len(order)), m.name))


def family_models() -> list[ShippedModel]:
    """The shipped unconditional MNIST models: what the families table compares (one dataset and
    one task, as its stability sweep and likelihoods are MNIST's), without the zoo's conditional
    and Fashion-MNIST exports."""
    return [model for model in shipped_models() if model.dataset == "mnist" and model.num_classes is None]


def find_shipped_model(name: str) -> ShippedModel:
    """The shipped model called ``name``; UnknownModelName listing the names otherwise."""
    models = {model.name: model for model in shipped_models()}
    if name not in models:
        raise UnknownModelName(name, list(models))
    return models[name]


def resolve_model_path(name_or_path) -> Path:
    """The model file or folder that a command-line argument means.

    An existing path is itself (a folder named like a model in the working directory wins over
    the shipped model). Text that looks like a name (`NAME_PATTERN`) is a shipped model's name:
    its export folder, or UnknownModelName. Anything else is returned as a path, so that a path
    which does not exist keeps load_sampler's "does not exist" error.
    """
    path = Path(name_or_path)
    if path.exists() or not NAME_PATTERN.fullmatch(str(name_or_path)):
        return path
    return find_shipped_model(str(name_or_path)).path


def from_preset(name: str):
    """The `keras_gen.sampling.Sampler` of the shipped model called ``name`` (``keras-gen
    models`` lists them), the object ``load_sampler`` returns for its export::

        sampler = keras_gen.from_preset("ddpm_mnist")
        images = sampler(16, seed=0, steps=25)   # float32 (16, 28, 28, 1) in [0, 1]

    A path to an export or ``.keras`` file is accepted too (`resolve_model_path`). Raises
    UnknownModelName (a ValueError) listing the known names for a name no shipped model has.
    """
    from keras_gen.sampling import load_sampler

    return load_sampler(resolve_model_path(name))
