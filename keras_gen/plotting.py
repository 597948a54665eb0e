"""Figures: image grids, latent manifold and scatter, diffusion strips, loss curves, charts.

Every function takes arrays, writes a PNG (atomically) when given a path, and returns the
matplotlib Figure. Run inside a Jupyter / VS Code kernel (the tutorials' ``# %%`` cells, the
notebooks/), every PNG written is also shown inline under its cell; run as a script, it is only
written. Images may be float in [0, 1] or [-1, 1] or uint8.
"""

from __future__ import annotations


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def to_display(images) -> np.ndarray:
    """Images of any supported range/shape -> float (N, H, W) in [0, 1] for imshow."""
    x = np.asarray(images)
    if x.ndim == 4:
        x = x[..., 0]
    if x.ndim == 2:
        x = x[None]
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    x = x.astype(np.float32)
    if x.min() < -1e-3:
        x = (x + 1.0) / 2.0
    return np.clip(x, 0.0, 1.0)


def save_figure(fig, path):
    """Write a figure to path atomically (keras_gen.files), so a crash never leaves half a PNG."""
    if path is None:
        return fig
    from keras_gen.files import PNG_SOFTWARE, atomic_path

    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=fig.dpi, bbox_inches="tight", metadata={"Software": PNG_SOFTWARE})
    finally:
        plt.close(fig)
    show_inline(path)
    return fig


def in_notebook_kernel() -> bool:
    """True inside an IPython kernel (Jupyter, VS Code cells), False in scripts and terminals."""
    import sys

    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def show_inline(path):
    """Display a written PNG under the running notebook cell (no-op outside a kernel)."""
    if in_notebook_kernel():
        from IPython.display import Image, display

        display(Image(filename=str(path)))


def tile(images, ncols=None) -> np.ndarray:
    """Arrange (N, H, W) images into one (rows*H, cols*W) mosaic with a 1-pixel gap."""
    x = to_display(images)
    n, h, w = x.shape
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    canvas = np.ones((nrows * (h + 1) - 1, ncols * (w + 1) - 1), dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, ncols)
        canvas[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = x[i]
    return canvas


def image_grid(images, path=None, *, ncols=None, title=None, scale=0.35):
    """A grid of images (white gaps), e.g. samples or training images."""
    canvas = tile(images, ncols)
    fig = plt.figure(figsize=(max(2.0, canvas.shape[1] * scale / 10), max(2.0, canvas.shape[0] * scale / 10)))
    ax = fig.add_axes([0, 0, 1, 0.93 if title else 1])
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def loss_curves(history, path=None, *, title="Training losses", xlabel="epoch"):
    """Line plot of each loss series in a {name: [values]} mapping (e.g. Keras History.history)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in history.items():
        if len(values):
            ax.plot(np.arange(1, len(values) + 1), values, label=name, marker="o" if len(values) < 30 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def latent_manifold(decode_fn, path=None, *, n=20, low=0.05, high=0.95, title="2-D latent manifold"):
    """Decode a grid of z over normal quantiles low..high (like the article's VAE figure).

    ``decode_fn(z)`` maps (n*n, 2) float32 codes to images; rows go from high to low z2.
    """
    from statistics import NormalDist
    q = np.array([NormalDist().inv_cdf(p) for p in np.linspace(low, high, n)], dtype=np.float32)
    z1, z2 = np.meshgrid(q, q[::-1])
    z = np.stack([z1.ravel(), z2.ravel()], axis=1)
    images = np.asarray(decode_fn(z))
    return image_grid(images, path, ncols=n, title=title)


def latent_scatter(codes, labels, path=None, *, title="Test images in latent space (posterior means)",
                   class_names=None):
    """Scatter of 2-D latent codes coloured by label."""
    codes = np.asarray(codes)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    sc = ax.scatter(codes[:, 0], codes[:, 1], c=np.asarray(labels), cmap="tab10", s=3, alpha=0.7)
    cbar = fig.colorbar(sc, ax=ax, ticks=range(10))
    if class_names:
        cbar.ax.set_yticklabels(class_names)
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(title)
    return save_figure(fig, path)


def image_strip(rows, path=None, *, row_labels=None, col_labels=None, title=None):
    """A table of images: ``rows`` is a list of equal-length lists/arrays of single images."""
    rows = [to_display(np.stack([np.asarray(im) for im in r])) for r in rows]
    nrows, ncols = len(rows), len(rows[0])
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.0 * ncols + 0.6, 1.05 * nrows + 0.4), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            ax.imshow(row[c], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and col_labels is not None:
                ax.set_title(str(col_labels[c]), fontsize=8)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(str(row_labels[r]), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def matrix_image(matrix, path=None, *, title=None, xlabel=None, ylabel=None):
    """A matrix drawn as an image (row 0 on top), e.g. which entries of a Jacobian are nonzero."""
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.imshow(np.asarray(matrix, dtype=np.float32), cmap="Greys", interpolation="nearest")
    ax.set_xlabel(xlabel or "")
    ax.set_ylabel(ylabel or "")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def forward_process_strip(schedule, x0, path=None, *, ts=None, seed=0):
    """Noise images x0 ([-1, 1], (B, H, W, 1)) to t = 0, 25, ..., like the article's figure.

    One row per image; column t shows q(x_t | x_0) with one fixed noise draw per image.
    """
    import tensorflow as tf
    T = schedule.timesteps
    ts = list(range(0, T, max(1, T // 8))) + [T - 1] if ts is None else list(ts)
    x0 = tf.convert_to_tensor(np.asarray(x0, np.float32))
    noise = tf.random.stateless_normal(tf.shape(x0), seed=[seed, 0])
    rows = [[] for _ in range(x0.shape[0])]
    for t in ts:
        xt = schedule.q_sample(x0, tf.fill([x0.shape[0]], t), noise).numpy()
        for i in range(x0.shape[0]):
            rows[i].append(np.clip(xt[i], -1, 1))
    return image_strip(rows, path, col_labels=[f"t={t}" for t in ts], title="Forward process q(x_t | x_0)")


def reverse_process_strip(trajectory, path=None, *, num_columns=9, timesteps=None):
    """Columns of a sampling trajectory (steps+1, B, H, W, C), from noise to image, one row per sample."""
    traj = np.asarray(trajectory)
    idx = np.unique(np.linspace(0, len(traj) - 1, num_columns).round().astype(int))
    rows = [[np.clip(traj[j, i], -1, 1) for j in idx] for i in range(traj.shape[1])]
    labels = [f"step {j}" for j in idx] if timesteps is None else [f"t={timesteps[j]}" for j in idx]
    return image_strip(rows, path, col_labels=labels, title="Reverse process: noise to image")


def reverse_engineering(x0, noised, recovered, path=None, *, t=None):
    """The article's "reverse engineering": real images, the same noised to t, and denoised back."""
    rows = [list(x0), list(np.clip(noised, -1, 1)), list(recovered)]
    return image_strip(rows, path, row_labels=["input", f"noised t={t}", "recovered"],
                       title="Noise a real image, then denoise it back")


# ------------------------------------------------------------------ evaluation (trilemma) charts

def predicted_class_histogram(counts, path=None, *, class_names=None, title="Predicted classes",
                              min_fraction=0.02):
    """Bar chart of the share of samples per predicted class.

    ``counts`` is a (C,) histogram of counts (keras_gen.evaluation.class_histogram) or (N, C)
    class probabilities. Dashed lines mark the uniform share 1/C and the ``min_fraction`` a class
    needs to count as covered.
    """
    counts = np.asarray(counts)
    if counts.ndim == 2:
        counts = np.bincount(counts.argmax(axis=1), minlength=counts.shape[1])
    fractions = counts / max(counts.sum(), 1)
    c = len(fractions)
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * c + 1.5), 3.6))
    colors = ["tab:blue" if f >= min_fraction else "tab:red" for f in fractions]
    ax.bar(np.arange(c), fractions, color=colors)
    ax.axhline(1.0 / c, color="gray", ls="--", lw=1, label=f"uniform ({1.0 / c:.0%})")
    ax.axhline(min_fraction, color="tab:red", ls=":", lw=1, label=f"covered if >= {min_fraction:.0%}")
    ax.set_xticks(np.arange(c))
    ax.set_xticklabels(names, rotation=30 if max(len(n) for n in names) > 2 else 0, ha="right"
                       if max(len(n) for n in names) > 2 else "center", fontsize=8)
    ax.set_ylabel("share of samples")
    ax.set_ylim(0, max(0.25, float(fractions.max()) * 1.1))
    ax.set_title(f"{title} (n={int(counts.sum())})", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def nearest_the_corner(rows):
    """The row nearest the trilemma's corner (best FID, fastest, every class covered), or None.

    Among the rows that cover the most classes, the one with the smallest distance to (lowest
    FID, highest samples/s) in log-log space, each axis scaled to the span of the rows."""
    rows = [r for r in rows if r.get("samples_per_s") and r.get("fid") is not None]
    if not rows:
        return None
    most = max(r["classes_covered"] for r in rows)
    rows = [r for r in rows if r["classes_covered"] == most]
    log_fid = np.log([max(float(r["fid"]), 1e-2) for r in rows])
    log_speed = np.log([float(r["samples_per_s"]) for r in rows])

    def scaled(values, best):
        span = values.max() - values.min()
        return np.abs(values - best) / (span if span > 0 else 1.0)

    distance = np.hypot(scaled(log_fid, log_fid.min()), scaled(log_speed, log_speed.max()))
    return rows[int(np.argmin(distance))]


# The article's per-model trilemma triangles mark each axis good (red) or bad (blue) by eye; these
# are the measured rules that replace the eye, relative to the rows compared side by side.
QUALITY_FACTOR = 1.5  # good quality: FID within 1.5x of the best row's
SPEED_FACTOR = 10.0  # fast: within 10x of the fastest row's samples/s (one order of magnitude)
MIN_CLASS_FRACTION = 0.02  # full coverage: every class holds >= 2% of the samples (README protocol)


def trilemma_marks(row, rows) -> dict:
    """{"quality", "speed", "coverage"} -> True (good) / False (bad) for ``row`` among ``rows``
    (evaluation rows: "fid", "samples_per_s", "classes_covered", "min_class_fraction"), by the
    rules above: FID within QUALITY_FACTOR of the best, speed within SPEED_FACTOR of the fastest,
    every class at MIN_CLASS_FRACTION or more."""
    best_fid = min(float(r["fid"]) for r in rows)
    fastest = max(float(r["samples_per_s"]) for r in rows)
    num_classes = max(len(r.get("histogram", [])) for r in rows) or 10
    return {"quality": float(row["fid"]) <= QUALITY_FACTOR * best_fid,
            "speed": float(row["samples_per_s"]) * SPEED_FACTOR >= fastest,
            "coverage": (row["classes_covered"] >= num_classes
                         and float(row.get("min_class_fraction", 0.0)) >= MIN_CLASS_FRACTION)}


def model_trilemma(row, rows, path=None, *, title=None):
    """The article's per-model trilemma triangle from measured numbers: the vertices quality,
    speed and coverage of ``row``, red where `trilemma_marks` (against ``rows``) finds it good,
    blue where bad, each with its number."""
    marks = trilemma_marks(row, rows)
    corners = {"quality": (0.0, 1.0), "speed": (-0.866, -0.5), "coverage": (0.866, -0.5)}
    text = {"quality": f"quality\nFID {float(row['fid']):.3g}",
            "speed": f"speed\n{float(row['samples_per_s']):.3g} samples/s",
            "coverage": f"coverage\n{row['classes_covered']} classes >= 2%\n"
                        f"entropy {float(row['normalized_entropy']):.2f}"}
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    xs, ys = zip(*corners.values())
    ax.fill(xs, ys, color="0.93", edgecolor="0.5", lw=1.2)
    for axis, (x, y) in corners.items():
        color = "tab:red" if marks[axis] else "tab:blue"
        ax.scatter([x], [y], s=900, color=color, zorder=3)
        ax.annotate(text[axis], (x, y), ha="center", va="bottom" if y > 0 else "top",
                    xytext=(0, 22 if y > 0 else -22), textcoords="offset points", fontsize=9)
    ax.set_xlim(-1.6, 1.6)
    ax.set_ylim(-1.35, 1.65)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title or f"{row['label']}: red = good, blue = bad", fontsize=10)
    return save_figure(fig, path)


def trilemma_chart(rows, path=None, *, references=(), title="The generative trilemma"):
    """Quality, speed and coverage of several generators in one figure (three panels).

    ``rows``: dicts with "label", "group" (rows of one model, e.g. a DDPM at several DDIM step
    counts, share a group and are joined by a line in NFE order), "fid", "samples_per_s",
    "nfe_per_sample", "classes_covered" and "normalized_entropy". ``references``: rows of the
    same form without speed (real data, noise, a single class), drawn in gray.

    Panels: (1) FID against samples/s, both log scale (down-right is fast and good; the row
    `nearest_the_corner` of quality, speed and coverage is ringed); (2) FID
    against the class entropy (down-right is good and diverse); (3) classes holding >= 2% of
    the samples, for every row.
    """
    rows, references = list(rows), list(references)
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2), gridspec_kw=dict(width_ratios=[1.2, 1, 0.9]))
    groups = list(dict.fromkeys(r.get("group", r["label"]) for r in rows))
    colors = {g: plt.cm.tab10(i % 10) for i, g in enumerate(groups)}
    floor = 1e-2

    def fid_of(r):
        return max(float(r["fid"]), floor)

    ax = axes[0]
    for g in groups:
        members = sorted((r for r in rows if r.get("group", r["label"]) == g and r.get("samples_per_s")),
                         key=lambda r: r.get("nfe_per_sample") or 0)
        if not members:
            continue
        xs, ys = [r["samples_per_s"] for r in members], [fid_of(r) for r in members]
        ax.plot(xs, ys, "-o" if len(members) > 1 else "o", color=colors[g], label=g, ms=7)
        for r, x, y in zip(members, xs, ys):
            nfe = r.get("nfe_per_sample")
            tag = r.get("short_label", r["label"]) + (f"\n{nfe:g} NFE" if nfe else "")
            ax.annotate(tag, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    for i, r in enumerate(references):
        ax.axhline(fid_of(r), color=plt.cm.Greys(0.45 + 0.5 * i / max(1, len(references))),
                   ls=("--", ":", "-.")[i % 3], lw=1.2, label=f"{r['label']} (FID {r['fid']:.3g})")
    best = nearest_the_corner(rows)
    if best is not None:
        ax.scatter([best["samples_per_s"]], [fid_of(best)], s=260, facecolors="none", edgecolors="black",
                   linewidths=1.5, zorder=4, label=f"nearest the corner: {best['label']}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("speed: samples / second (log)")
    ax.set_ylabel("quality: classifier FID (log, lower is better)")
    ax.set_title("Quality vs speed", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    if groups or references:
        ax.legend(fontsize=7, loc="best")

    ax = axes[1]
    sizes = {g: sum(r.get("group", r["label"]) == g for r in rows) for g in groups}
    for r in rows:
        g = r.get("group", r["label"])
        ax.scatter(r["normalized_entropy"], fid_of(r), color=colors[g], s=45, zorder=3)
        tag = r.get("short_label", r["label"]) if sizes[g] > 1 else r["label"]
        ax.annotate(tag, (r["normalized_entropy"], fid_of(r)), textcoords="offset points",
                    xytext=(5, 3), fontsize=7)
    for r in references:
        ax.scatter(r["normalized_entropy"], fid_of(r), color="gray", marker="*", s=90, zorder=3)
        ax.annotate(r["label"], (r["normalized_entropy"], fid_of(r)), textcoords="offset points",
                    xytext=(5, -9), fontsize=7, color="dimgray")
    ax.set_yscale("log")
    ax.set_xlim(-0.05, 1.1)
    ax.set_xlabel("coverage: class entropy / log(classes) (1 = balanced)")
    ax.set_ylabel("classifier FID (log)")
    ax.set_title("Quality vs coverage", fontsize=10)
    ax.grid(alpha=0.3, which="both")

    ax = axes[2]
    everything = rows + references
    labels = [r["label"] for r in everything]
    values = [r["classes_covered"] for r in everything]
    bar_colors = [colors[r.get("group", r["label"])] for r in rows] + ["lightgray"] * len(references)
    y = np.arange(len(everything))[::-1]
    ax.barh(y, values, color=bar_colors)
    for yi, r in zip(y, everything):
        ax.annotate(f"H={r['normalized_entropy']:.2f}", (r["classes_covered"], yi),
                    textcoords="offset points", xytext=(3, -3), fontsize=7)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    num_classes = max([len(r.get("histogram", [])) for r in everything] + [10])
    ax.set_xlim(0, num_classes + 2.5)
    ax.set_xlabel("coverage: classes with >= 2% of samples")
    ax.set_title("Coverage", fontsize=10)
    ax.grid(alpha=0.3, axis="x")

    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return save_figure(fig, path)


def quality_vs_time(curves, path=None, *, title="Classifier FID vs training time", references=()):
    """FID (log) against training wall-clock minutes, one line per training run.

    ``curves``: {run label: [(minutes, fid), ...]}; ``references``: [(label, fid)] drawn as
    gray horizontal lines (e.g. real images), so the curves can be read against them.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (label, points) in enumerate(curves.items()):
        points = sorted(points)
        xs, ys = [p[0] for p in points], [max(float(p[1]), 1e-2) for p in points]
        ax.plot(xs, ys, "-o", color=plt.cm.tab10(i % 10), label=label, ms=5)
        ax.annotate(f"{ys[-1]:.3g}", (xs[-1], ys[-1]), textcoords="offset points", xytext=(5, 3), fontsize=8)
    for i, (label, fid) in enumerate(references):
        ax.axhline(max(float(fid), 1e-2), color="gray", ls=("--", ":", "-.")[i % 3], lw=1,
                   label=f"{label} (FID {fid:.3g})")
    ax.set_yscale("log")
    ax.set_xlabel("training wall-clock minutes (this machine)")
    ax.set_ylabel("classifier FID (log, lower is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def guidance_curve(rows, path=None, *, title="Classifier-free guidance: fidelity vs diversity"):
    """A guidance sweep (keras_gen.evaluation.guidance_sweep rows) against the scale w: class
    accuracy, precision and recall on the left axis, classifier FID on the right."""
    rows = sorted(rows, key=lambda r: r["guidance"])
    ws = [r["guidance"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key, style in (("accuracy", "-o"), ("precision", "-s"), ("recall", "-^")):
        ax.plot(ws, [r[key] for r in rows], style, label=key, ms=5)
    ax.set_xlabel("guidance scale w (0 = unconditional, 1 = conditional)")
    ax.set_ylabel("accuracy / precision / recall")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    right = ax.twinx()
    right.plot(ws, [r["fid"] for r in rows], "--", color="gray", marker="x", label="FID (right)")
    right.set_ylabel("classifier FID (lower is better)")
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="best")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def fid_vs_steps(series, path=None, *, title="Classifier FID vs sampling steps", xlabel="network passes per sample"):
    """Log-x line plot of classifier FID against network passes per sample (or what ``xlabel``
    names), one line per series ({name: [(steps, fid), ...]}): e.g. the teacher's DDIM and each
    distillation round's student."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in series.items():
        points = sorted(points)
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("classifier FID (lower is better)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def families_chart(rows, path=None, *, title="Four families on four axes (recorded numbers)"):
    """One panel per axis of the families table (keras_gen.evaluation.families.family_rows), the
    families in the same order on every panel: (1) likelihood in bits/dim (a family measured in
    another unit, or with none, is written in instead of drawn); (2) stability: the FID of each
    seed at the sweep's budget and their mean; (3) fidelity: the export's FID, precision / recall
    written beside; (4) speed: samples/s (log scale) and network passes per sample."""
    rows = list(rows)
    names = [row["name"] for row in rows]
    y = np.arange(len(rows))[::-1]  # the first row on top
    fig, axes = plt.subplots(1, 4, figsize=(17, 0.6 * len(rows) + 2.2), sharey=True)

    def note(ax, i, text):
        ax.text(0.02, y[i], text, va="center", transform=ax.get_yaxis_transform(), fontsize=8, color="dimgray")

    def bars(ax, column, bar):
        """One bar per row: ``bar(row)`` gives (value, text beside it) or None (the row's reason instead)."""
        for i, row in enumerate(rows):
            drawn = bar(row)
            if drawn:
                ax.barh(y[i], drawn[0], color=f"C{axes.tolist().index(ax)}")
                ax.text(drawn[0], y[i], " " + drawn[1], va="center", fontsize=8)
            else:
                note(ax, i, row["missing"].get(column, ("-",))[0])

    def likelihood(row):
        bits = [b for b in row["likelihood"] if b["unit"] == "bits/dim"]
        return (bits[0]["value"], f"{bits[0]['value']:.3f}") if bits else None

    bars(axes[0], "likelihood", likelihood)
    for i, row in enumerate(rows):  # bounds in another unit are written in, not drawn on this axis
        if row["likelihood"] and not likelihood(row):
            note(axes[0], i, "; ".join(f"{b['value']:.1f} {b['unit']} ({b['bound']})" for b in row["likelihood"])
                 + "\n(other data)")
    axes[0].set_xlabel("bits/dim of the test set (lower is better)")
    axes[0].set_title("likelihood")

    ax = axes[1]
    for i, row in enumerate(rows):
        entry = row["stability"]
        if entry:
            ax.scatter(entry["fid"], [y[i]] * len(entry["fid"]), color="C1", zorder=3)
            ax.vlines(entry["fid_mean"], y[i] - 0.3, y[i] + 0.3, color="black")
            ax.text(max(entry["fid"]), y[i], f"  {len(entry['fid'])} seed{'s' if len(entry['fid']) != 1 else ''}",
                    va="center", fontsize=8)
        else:
            note(ax, i, row["missing"]["stability"][0])
    ax.set_xlabel("FID of each seed at the sweep's budget (mean: bar)")
    ax.set_title("stability")

    def fidelity(row):
        sampling = row["sampling"]
        return sampling and (sampling["fid"], f"{sampling['fid']:.1f}  P {sampling['precision']:.2f} / "
                                              f"R {sampling['recall']:.2f}")

    def speed(row):
        sampling = row["sampling"]
        passes = sampling and sampling["nfe_per_sample"]
        return sampling and (sampling["samples_per_s"], f"{passes} pass{'es' if passes != 1 else ''}")

    bars(axes[2], "sampling", fidelity)
    axes[2].set_xlabel("classifier FID of the export (lower is better)")
    axes[2].set_title("fidelity")
    bars(axes[3], "sampling", speed)
    axes[3].set_xscale("log")
    axes[3].set_xlabel("samples/s on this CPU (log scale)")
    axes[3].set_title("speed")

    axes[0].set_yticks(y, names)
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
        ax.margins(x=0.35)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
