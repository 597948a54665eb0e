"""The DDPM noise predictor: a time-conditioned U-Net and its layers.

The layout follows the article's companion repository (DDPMs/u_net.py, a TensorFlow port of
lucidrains' denoising-diffusion-pytorch): a 7x7 stem, per level two ResNet blocks conditioned on a
sinusoidal time embedding, a residual linear attention and a strided-conv downsample, a middle of
ResNet / full attention / ResNet, mirrored up levels fed with concatenated skips, and a final
ResNet block with a 1x1 output conv. Written for Keras 3 (`keras.ops`), mixed-precision safe:
normalisation and softmaxes run in float32 and the output is float32.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

NORM_EPSILON = 1e-5  # PyTorch's GroupNorm / LayerNorm default (Keras defaults to 1e-3)


def stable_softmax(logits, axis=-1):
    """Softmax in float32 after subtracting the maximum logit along ``axis``.

    Subtracting the max *value* makes exp() safe for any logits; the article's attention subtracts
    the argmax *index* instead (docs/errata.md, erratum 9), which leaves exp() free to overflow.
    """
    logits = ops.cast(logits, "float32")
    shifted = logits - ops.stop_gradient(ops.max(logits, axis=axis, keepdims=True))
    weights = ops.exp(shifted)
    return weights / ops.sum(weights, axis=axis, keepdims=True)


@keras.saving.register_keras_serializable(package="keras_gen")
class SinusoidalEmbedding(layers.Layer):
    """Transformer-style sinusoidal embedding of integer timesteps: (B,) -> (B, dim).

    The first half of the features is sin(t * f_i), the second cos(t * f_i), with frequencies
    f_i = max_period ** (-i / (dim / 2 - 1)), i = 0..dim/2-1.

    Args:
        dim: int. Embedding size; even and at least 4.
        max_period: float. Longest wavelength. Defaults to 10000.
    """

    def __init__(self, dim, max_period=10000.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(dim, int) or dim < 4 or dim % 2:
            raise ValueError(f"SinusoidalEmbedding dim must be an even integer >= 4, got {dim!r}")
        self.dim = dim
        self.max_period = float(max_period)

    def call(self, t):
        half = self.dim // 2
        freqs = ops.exp(ops.arange(half, dtype="float32") * (-math.log(self.max_period) / (half - 1)))
        angles = ops.cast(ops.reshape(t, (-1, 1)), "float32") * freqs[None, :]
        return ops.cast(ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1), self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "max_period": self.max_period}


@keras.saving.register_keras_serializable(package="keras_gen")
class ResnetBlock(layers.Layer):
    """Two [conv3x3 -> GroupNorm -> SiLU] blocks plus a residual connection.

    In the first block the time embedding sets a per-channel scale and shift after the norm:
    ``h * (1 + scale) + shift`` with ``(scale, shift) = Dense(2 * out_channels)(silu(time_emb))``.
    The residual is a 1x1 conv when the channel count changes, else the identity.
    Call as ``block(x, time_emb)`` (or ``block(x)`` when ``time_emb_dim`` is None).

    Args:
        out_channels: int. Output channels; divisible by ``groups``.
        groups: int. GroupNormalization groups (epsilon 1e-5). Defaults to 8.
        time_emb_dim: int or None. Size of the time embedding; None for an unconditioned block.
    """

    def __init__(self, out_channels, groups=8, time_emb_dim=None, **kwargs):
        super().__init__(**kwargs)
        if out_channels % groups:
            raise ValueError(f"out_channels ({out_channels}) must be divisible by groups ({groups})")
        self.out_channels = out_channels
        self.groups = groups
        self.time_emb_dim = time_emb_dim

    def build(self, input_shape):
        feature_shape = (*input_shape[:-1], self.out_channels)
        self.conv1 = layers.Conv2D(self.out_channels, 3, padding="same", name="conv1")
        self.norm1 = layers.GroupNormalization(self.groups, epsilon=NORM_EPSILON, name="norm1")
        self.conv2 = layers.Conv2D(self.out_channels, 3, padding="same", name="conv2")
        self.norm2 = layers.GroupNormalization(self.groups, epsilon=NORM_EPSILON, name="norm2")
        self.conv1.build(input_shape)
        for layer in (self.norm1, self.conv2, self.norm2):
            layer.build(feature_shape)
        self.time_proj = None
        if self.time_emb_dim is not None:
            self.time_proj = layers.Dense(2 * self.out_channels, name="time_proj")
            self.time_proj.build((input_shape[0], self.time_emb_dim))
        self.residual = None
        if input_shape[-1] != self.out_channels:
            self.residual = layers.Conv2D(self.out_channels, 1, name="residual")
            self.residual.build(input_shape)

    def call(self, x, time_emb=None):
        if (time_emb is None) != (self.time_proj is None):
            raise ValueError(f"{self.name}: pass time_emb exactly when time_emb_dim is set "
                             f"(time_emb_dim={self.time_emb_dim})")
        h = self.norm1(self.conv1(x))
        if self.time_proj is not None:
            scale, shift = ops.split(self.time_proj(ops.silu(time_emb))[:, None, None, :], 2, axis=-1)
            h = h * (1.0 + scale) + shift
        h = ops.silu(h)
        h = ops.silu(self.norm2(self.conv2(h)))
        return h + (x if self.residual is None else self.residual(x))

    def get_config(self):
        return {**super().get_config(), "out_channels": self.out_channels, "groups": self.groups,
                "time_emb_dim": self.time_emb_dim}


class _SpatialAttention(layers.Layer):
    """Shared parts of the attention layers: pre-norm, 1x1 qkv projection, heads reshaping."""

    def __init__(self, heads=4, dim_head=32, **kwargs):
        super().__init__(**kwargs)
        self.heads = heads
        self.dim_head = dim_head
        self.scale = dim_head**-0.5

    def build(self, input_shape):
        self.norm = layers.LayerNormalization(epsilon=NORM_EPSILON, name="norm")
        self.to_qkv = layers.Conv2D(3 * self.heads * self.dim_head, 1, use_bias=False, name="to_qkv")
        self.to_out = layers.Conv2D(input_shape[-1], 1, name="to_out")
        self.norm.build(input_shape)
        self.to_qkv.build(input_shape)
        self.to_out.build((*input_shape[:-1], self.heads * self.dim_head))

    def _qkv(self, x):
        """float32 q, k, v of shape (B, H*W, heads, dim_head) from the normalised input."""
        qkv = ops.cast(self.to_qkv(self.norm(x)), "float32")
        batch = ops.shape(x)[0]
        return [ops.reshape(part, (batch, -1, self.heads, self.dim_head))
                for part in ops.split(qkv, 3, axis=-1)]

    def _merge_heads(self, out, x):
        """(B, H*W, heads, dim_head) float32 -> (B, H, W, heads*dim_head) in the compute dtype."""
        shape = ops.shape(x)
        return ops.cast(ops.reshape(out, (shape[0], shape[1], shape[2], self.heads * self.dim_head)),
                        self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "dim_head": self.dim_head}


@keras.saving.register_keras_serializable(package="keras_gen")
class LinearAttention(_SpatialAttention):
    """Residual pre-norm linear attention (Shen et al. 2018, as in lucidrains' U-Net).

    ``x + LayerNorm(conv1x1(attn(LayerNorm(x))))``; queries are softmaxed over features and keys
    over positions, so the cost is linear in H*W.

    Args:
        heads: int. Attention heads. Defaults to 4.
        dim_head: int. Features per head. Defaults to 32.
    """

    def build(self, input_shape):
        super().build(input_shape)
        self.out_norm = layers.LayerNormalization(epsilon=NORM_EPSILON, name="out_norm")
        self.out_norm.build(input_shape)

    def call(self, x):
        q, k, v = self._qkv(x)
        q = ops.softmax(q, axis=-1) * self.scale  # over features
        k = ops.softmax(k, axis=1)  # over positions
        context = ops.einsum("bnhd,bnhe->bhde", k, v)
        out = ops.einsum("bhde,bnhd->bnhe", context, q)
        return x + self.out_norm(self.to_out(self._merge_heads(out, x)))


@keras.saving.register_keras_serializable(package="keras_gen")
class Attention(_SpatialAttention):
    """Residual pre-norm multi-head softmax self-attention over all H*W positions.

    ``x + conv1x1(attn(LayerNorm(x)))``, with the softmax computed by `stable_softmax` in float32.

    Args:
        heads: int. Attention heads. Defaults to 4.
        dim_head: int. Features per head. Defaults to 32.
    """

    def attention_logits(self, q, k):
        """Scaled dot products (B, heads, N, N) of q, k shaped (B, N, heads, dim_head)."""
        return ops.einsum("bihd,bjhd->bhij", q * self.scale, k)

    def call(self, x):
        q, k, v = self._qkv(x)
        weights = stable_softmax(self.attention_logits(q, k), axis=-1)
        out = ops.einsum("bhij,bjhd->bihd", weights, v)
        return x + self.to_out(self._merge_heads(out, x))


@keras.saving.register_keras_serializable(package="keras_gen")
class Downsample(layers.Conv2D):
    """Halve height and width: ``Conv2D(filters, kernel_size=4, strides=2, padding="same")``."""

    def __init__(self, filters, **kwargs):
        super().__init__(filters, kernel_size=4, strides=2, padding="same", **kwargs)

    def get_config(self):
        config = super().get_config()
        return {k: v for k, v in config.items() if k not in ("kernel_size", "strides", "padding")}


@keras.saving.register_keras_serializable(package="keras_gen")
class Upsample(layers.Conv2DTranspose):
    """Double height and width: ``Conv2DTranspose(filters, kernel_size=4, strides=2, padding="same")``."""

    def __init__(self, filters, **kwargs):
        super().__init__(filters, kernel_size=4, strides=2, padding="same", **kwargs)

    def get_config(self):
        config = super().get_config()
        return {k: v for k, v in config.items() if k not in ("kernel_size", "strides", "padding")}


def _halvings(size):
    count = 0
    while size % 2 == 0 and size > 0:
        size //= 2
        count += 1
    return count


@keras.saving.register_keras_serializable(package="keras_gen")
class UNet(keras.Model):
    """Noise predictor eps_theta(x_t, t) of a DDPM.

    Call convention: ``unet((x, t))`` (a tuple or list), with ``x`` float (B, H, W, channels) and
    ``t`` int (B,) timesteps; returns float32 (B, H, W, channels). H and W must be divisible by
    ``2 ** (len(dim_mults) - 1)`` (pad MNIST 28x28 to 32x32 for 4 levels).

    Layout: 7x7 conv to ``dim // 3 * 2`` channels; time MLP = SinusoidalEmbedding(dim) ->
    Dense(4 dim) -> GELU -> Dense(4 dim); level i at ``dim * dim_mults[i]`` channels has
    [ResnetBlock, ResnetBlock, LinearAttention, Downsample (not at the last level)]; middle
    [ResnetBlock, Attention, ResnetBlock]; up levels mirror the down levels (except level 0) on the
    concatenated skip, ending in Upsample; final ResnetBlock (not time-conditioned, as in the
    companion repository) on the level-0 skip and a 1x1 conv with a float32 output.
    ``UNet()`` (dim 64, mults (1, 2, 4, 8)) is the article's 32.3M-parameter network.

    Args:
        dim: int. Base width; the time embedding has ``4 * dim`` features. Defaults to 64.
        dim_mults: tuple of int. Width multiplier per resolution level. Defaults to (1, 2, 4, 8).
        channels: int. Image channels (in and out). Defaults to 1.
        attention_levels: tuple of bool, one per level, or None (all True). Where the levels'
            linear attention is used (down and up); the middle always has full attention.
        resnet_groups: int. GroupNorm groups; must divide ``dim * m`` for every m. Defaults to 8.
        attn_heads: int. Heads of every attention layer. Defaults to 4.
        attn_dim_head: int. Features per head. Defaults to 32.
        num_classes: int or None. With C classes the U-Net is class-conditional: call it as
            ``unet((x, t, y))`` with int labels ``y`` (B,) in [0, C], where C is the "null" class
            (no label, for classifier-free guidance); an Embedding(C + 1, 4 dim) of y is added to
            the time embedding. None (default): unconditional, ``unet((x, t))``.

    Example:
        >>> unet = UNet(dim=32, dim_mults=(1, 2, 2), attention_levels=(False, True, True))
        >>> eps = unet((tf.zeros((8, 32, 32, 1)), tf.zeros((8,), tf.int32)))
    """

    def __init__(self, dim=64, dim_mults=(1, 2, 4, 8), channels=1, attention_levels=None,
                 resnet_groups=8, attn_heads=4, attn_dim_head=32, num_classes=None, **kwargs):
        super().__init__(**kwargs)
        dim_mults = tuple(dim_mults)
        if not isinstance(dim, int) or dim < 4 or dim % 2:
            raise ValueError(f"dim must be an even integer >= 4, got {dim!r}")
        if not dim_mults or any(not isinstance(m, int) or m < 1 for m in dim_mults):
            raise ValueError(f"dim_mults must be a non-empty sequence of positive ints, got {dim_mults!r}")
        attention_levels = (True,) * len(dim_mults) if attention_levels is None else tuple(
            bool(a) for a in attention_levels)
        if len(attention_levels) != len(dim_mults):
            raise ValueError(f"attention_levels needs one flag per level ({len(dim_mults)}), "
                             f"got {attention_levels!r}")
        widths = [dim * m for m in dim_mults]
        if any(w % resnet_groups for w in [dim, *widths]):
            raise ValueError(f"resnet_groups={resnet_groups} must divide dim={dim} and every level "
                             f"width {widths}")
        self.dim = dim
        self.dim_mults = dim_mults
        self.channels = channels
        self.attention_levels = attention_levels
        self.resnet_groups = resnet_groups
        self.attn_heads = attn_heads
        self.attn_dim_head = attn_dim_head
        self.num_downsamples = len(dim_mults) - 1
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                        or num_classes < 2):
            raise ValueError(f"num_classes must be None or an integer >= 2, got {num_classes!r}")
        self.num_classes = num_classes

        time_dim = 4 * dim
        attn_args = dict(heads=attn_heads, dim_head=attn_dim_head)

        def resnet(width, name, time_emb_dim=time_dim):
            return ResnetBlock(width, groups=resnet_groups, time_emb_dim=time_emb_dim, name=name)

        def attention(level, name):
            return LinearAttention(**attn_args, name=name) if attention_levels[level] else \
                layers.Identity(name=name)

        self.init_conv = layers.Conv2D(dim // 3 * 2, 7, padding="same", name="init_conv")
        self.time_mlp = keras.Sequential(
            [SinusoidalEmbedding(dim), layers.Dense(time_dim), layers.Activation("gelu"),
             layers.Dense(time_dim)], name="time_mlp")
        # Index num_classes is the null class (label dropped): the unconditional prediction.
        # N(0, 1) entries as in PyTorch references (diffusers' class_embedding), not Keras' U(+-0.05)
        self.class_embedding = None if num_classes is None else layers.Embedding(
            num_classes + 1, time_dim, embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="class_embedding")

        self.down_res1, self.down_res2, self.down_attn, self.down_sample = [], [], [], []
        for i, width in enumerate(widths):
            self.down_res1.append(resnet(width, f"down{i}_res1"))
            self.down_res2.append(resnet(width, f"down{i}_res2"))
            self.down_attn.append(attention(i, f"down{i}_attn"))
            self.down_sample.append(Downsample(width, name=f"down{i}_sample") if i < self.num_downsamples
                                    else layers.Identity(name=f"down{i}_sample"))

        self.mid_res1 = resnet(widths[-1], "mid_res1")
        self.mid_attn = Attention(**attn_args, name="mid_attn")
        self.mid_res2 = resnet(widths[-1], "mid_res2")

        # Up level i (i = L-1 .. 1) works at level i's resolution and ends at level i-1's width.
        self.up_res1, self.up_res2, self.up_attn, self.up_sample = [], [], [], []
        for i in reversed(range(1, len(widths))):
            self.up_res1.append(resnet(widths[i - 1], f"up{i}_res1"))
            self.up_res2.append(resnet(widths[i - 1], f"up{i}_res2"))
            self.up_attn.append(attention(i, f"up{i}_attn"))
            self.up_sample.append(Upsample(widths[i - 1], name=f"up{i}_sample"))

        self.final_res = resnet(dim, "final_res", time_emb_dim=None)
        self.final_conv = layers.Conv2D(channels, 1, dtype="float32", name="final_conv")

    def _check_image_size(self, x_shape):
        needed = self.num_downsamples
        height, width = x_shape[1], x_shape[2]
        if height is None or width is None:
            return
        possible = min(_halvings(height), _halvings(width))
        if possible < needed:
            raise ValueError(
                f"{height}x{width} images can be downsampled {possible} times, but "
                f"UNet(dim_mults={self.dim_mults}) downsamples {needed} times: use a size divisible "
                f"by {2 ** needed} (e.g. pad 28x28 to 32x32) or fewer dim_mults")

    def _split_inputs(self, inputs):
        """(x, t, y) from the call's inputs, y None for an unconditional U-Net."""
        expected = 2 if self.class_embedding is None else 3
        if not isinstance(inputs, (tuple, list)) or len(inputs) != expected:
            got = len(inputs) if isinstance(inputs, (tuple, list)) else type(inputs).__name__
            what = "(x, t, labels): num_classes is set" if expected == 3 else "(x, t): num_classes is None"
            raise ValueError(f"this UNet takes {what}; got {got} inputs")
        return (*inputs, None) if expected == 2 else tuple(inputs)

    def build(self, input_shape):
        x_shape, t_shape, y_shape = self._split_inputs(input_shape)
        self._check_image_size(x_shape)
        specs = [keras.KerasTensor(x_shape, dtype=self.compute_dtype), keras.KerasTensor(t_shape, dtype="int32")]
        if y_shape is not None:
            specs.append(keras.KerasTensor(y_shape, dtype="int32"))
        # One symbolic trace of call() creates every sublayer's weights (in call order).
        super().compute_output_spec(tuple(specs))

    def compute_output_spec(self, inputs):
        # The output's shape and dtype are known without tracing call() again: a symbolic call
        # (DDPM builds its U-Nets that way) would otherwise trace the whole network twice, once in
        # build() and once here, which is most of the cost of constructing a DDPM.
        x, _, _ = self._split_inputs(inputs)
        self._check_image_size(x.shape)
        return keras.KerasTensor((*x.shape[:-1], self.channels), dtype="float32")  # final_conv is float32

    def call(self, inputs):
        x, t, y = self._split_inputs(inputs)
        self._check_image_size(x.shape)
        time_emb = self.time_mlp(t)
        if y is not None:
            time_emb = time_emb + ops.cast(self.class_embedding(y), time_emb.dtype)
        x = self.init_conv(x)
        skips = []
        for res1, res2, attn, down in zip(self.down_res1, self.down_res2, self.down_attn, self.down_sample):
            x = attn(res2(res1(x, time_emb), time_emb))
            skips.append(x)
            x = down(x)
        x = self.mid_res2(self.mid_attn(self.mid_res1(x, time_emb)), time_emb)
        for res1, res2, attn, up in zip(self.up_res1, self.up_res2, self.up_attn, self.up_sample):
            x = ops.concatenate([x, skips.pop()], axis=-1)
            x = up(attn(res2(res1(x, time_emb), time_emb)))
        x = self.final_res(ops.concatenate([x, skips.pop()], axis=-1))
        return self.final_conv(x)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "dim_mults": list(self.dim_mults),
                "channels": self.channels, "attention_levels": list(self.attention_levels),
                "resnet_groups": self.resnet_groups, "attn_heads": self.attn_heads,
                "attn_dim_head": self.attn_dim_head,
                # unconditional configs stay as they were before num_classes existed
                **({} if self.num_classes is None else {"num_classes": self.num_classes})}
