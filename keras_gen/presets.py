"""Named configurations per model: "article" (the article's hyperparameters), "cpu" (good results
in minutes on a 2-core CPU, chosen by measurement), "tiny" (seconds, for tests).

Every preset trains a class-conditional model with ``num_classes=10`` (``keras-gen train ...
--num-classes 10``): the dataset then yields (image, label) batches. DDPM-only conditional keys:
``label_dropout`` (share of labels replaced by the null class while training, for classifier-free
guidance) and ``guidance`` (the default guidance scale w of sampling and exports).

A preset is a flat dict; ``get_preset(kind, name, **overrides)`` returns a copy with overrides
applied (None values ignored), validated.
"""

from __future__ import annotations

PRESETS = {
    "vae": {
        # Article, "Variational Autoencoders": latent 2, 200 epochs, batch 32, Adam 1e-4.
        "article": dict(latent_dim=2, epochs=200, batch_size=32, learning_rate=1e-4),
        # Classifier FID of 1000 samples after 12 epochs (benchmarks/fid_vs_wallclock.py):
        # latent 16: 54.8 (15 min), latent 100: 73.1 (16 min); latent 2 covers only 9 digits.
        "cpu": dict(latent_dim=16, epochs=12, batch_size=64, learning_rate=1e-3),
        "tiny": dict(latent_dim=2, epochs=2, batch_size=64, learning_rate=1e-3, limit=512),
    },
    "dcgan": {
        # Article, "Deep Convolutional GANs": latent 100, 100 epochs, batch 32, Adam 1e-4 for both.
        "article": dict(latent_dim=100, epochs=100, batch_size=32, learning_rate=1e-4, beta_1=0.9),
        # The article's latent-2 variant, for the manifold figure that shows mode collapse.
        "article-latent2": dict(latent_dim=2, epochs=100, batch_size=32, learning_rate=1e-4, beta_1=0.9),
        # Classifier FID of 1000 samples by epoch (benchmarks/fid_vs_wallclock.py, loaded CPU):
        # 1: 131 (8 classes), 2: 93, 4: 71, 6: 71, 8: 66 (15 min), 10: 77 -> 8 epochs.
        "cpu": dict(latent_dim=100, epochs=8, batch_size=64, learning_rate=2e-4, beta_1=0.5),
        "tiny": dict(latent_dim=16, epochs=2, batch_size=64, learning_rate=2e-4, beta_1=0.5, limit=512),
    },
    "ddpm": {
        # Article, "Diffusion Models": T=200, batch 64, lr 1e-4, 10 epochs, U-Net dim 64, mults
        # (1, 2, 4, 8) (32.3M parameters), 32x32 images (padded here, not resized: docs/errata.md,
        # erratum 10).
        "article": dict(dim=64, dim_mults=(1, 2, 4, 8), attention_levels=None, timesteps=200,
                        epochs=10, batch_size=64, learning_rate=1e-4, ddim_steps=50, ema_decay=0.999),
        # Measured (benchmarks/unet_candidates.py): attention at 16x16 made a 1.3M U-Net 2-3x
        # slower than this 1.8M one with attention only at 8x8 and 4x4; bf16 gave ~1.3-1.9x.
        # ddim_eta=1: classifier FID of 400 DDIM-50 samples of a 3-epoch checkpoint, 65.0 at eta 0,
        # 64.5 at 0.5, 49.6 at 1 (eta 0 drew many stroke tangles; README "DDIM eta").
        "cpu": dict(dim=32, dim_mults=(1, 2, 2, 2), attention_levels=(False, False, True, True),
                    timesteps=1000, schedule="linear", epochs=3, batch_size=32, learning_rate=1e-3,
                    warmup_steps=300, lr_decay="cosine", ddim_steps=50, ddim_eta=1.0, ema_decay=0.995,
                    precision="mixed"),
        "tiny": dict(dim=8, dim_mults=(1, 2), attention_levels=(False, True), timesteps=20,
                     epochs=2, batch_size=32, learning_rate=1e-3, ddim_steps=5, ema_decay=0.9,
                     limit=256),
    },
}

COMMON_DEFAULTS = dict(dataset="mnist", seed=0, limit=None, loop="fit", precision="float32", num_classes=None)
CONDITIONAL_DEFAULTS = {"ddpm": dict(label_dropout=0.1, guidance=3.0)}  # added when num_classes is set
POSITIVE_KEYS = ("epochs", "batch_size", "latent_dim", "limit", "timesteps", "dim")


def preset_names(kind):
    return sorted(PRESETS[kind])


def get_preset(kind: str, name: str = "cpu", **overrides) -> dict:
    """The preset ``name`` for model ``kind`` with non-None overrides applied."""
    if kind not in PRESETS:
        raise ValueError(f"unknown model {kind!r}; choose from {', '.join(sorted(PRESETS))}")
    if name not in PRESETS[kind]:
        raise ValueError(f"unknown preset {name!r} for {kind}; choose from {', '.join(preset_names(kind))}")
    config = {**COMMON_DEFAULTS, **PRESETS[kind][name], "preset": name}
    config.update({k: v for k, v in overrides.items() if v is not None})
    if config["num_classes"] is not None:
        config = {**CONDITIONAL_DEFAULTS.get(kind, {}), **config}
        num_classes = config["num_classes"]
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if config.get("loop") == "alternating":
            raise ValueError("the article's alternating loop trains unconditional DCGANs only; "
                             "use --loop fit with --num-classes")
    for key in POSITIVE_KEYS:
        value = config.get(key)
        if value is not None and (not isinstance(value, int) or value <= 0):
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    if config.get("learning_rate") is not None and config["learning_rate"] <= 0:
        raise ValueError(f"learning_rate must be positive, got {config['learning_rate']}")
    return config
