"""The DDPM U-Net and its layers: shapes, attention numerics, serialization, mixed precision."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_keras_round_trip
from keras_gen.diffusion import NoiseSchedule, initial_noise, sample, sample_graph
from keras_gen.layers import (
    Attention,
    Downsample,
    LinearAttention,
    ResnetBlock,
    SinusoidalEmbedding,
    UNet,
    Upsample,
    stable_softmax,
)

TINY = dict(dim=8, dim_mults=(1, 2), resnet_groups=4, attn_heads=2, attn_dim_head=8)


def inputs(batch=2, size=8, channels=1, seed=0):
    x = np.random.default_rng(seed).normal(size=(batch, size, size, channels)).astype("float32")
    return x, np.arange(batch, dtype="int32") * 7


@pytest.mark.parametrize("config, shape", [
    (TINY, (2, 8, 8, 1)),
    (TINY, (3, 16, 16, 1)),
    (TINY, (2, 8, 16, 1)),
    (dict(TINY, dim_mults=(1, 2, 2), channels=3, attention_levels=(False, False, True)), (2, 16, 16, 3)),
    (dict(TINY, dim_mults=(1,)), (1, 6, 6, 1)),
])
def test_unet_output_shape_matches_input(config, shape):
    unet = UNet(**config)
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    out = unet((x, np.arange(shape[0], dtype="int32")))
    assert out.shape == shape and out.dtype == "float32"
    assert np.all(np.isfinite(out))


def test_unet_runs_with_unknown_spatial_size_in_a_graph():
    unet = UNet(**TINY)
    fn = tf.function(lambda x, t: unet((x, t)), input_signature=[
        tf.TensorSpec((None, None, None, 1), tf.float32), tf.TensorSpec((None,), tf.int32)])
    assert fn(*inputs(size=16)).shape == (2, 16, 16, 1)


def test_unet_rejects_images_it_cannot_halve_enough():
    unet = UNet(**dict(TINY, dim_mults=(1, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"28x28 images can be downsampled 2 times.*downsamples 3 times"):
        unet(inputs(size=28))


@pytest.mark.parametrize("kwargs", [
    dict(dim=7), dict(dim_mults=()), dict(dim_mults=(1, 0)), dict(resnet_groups=3),
    dict(attention_levels=(True,)),
])
def test_unet_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        UNet(**{**TINY, **kwargs})


def test_attention_levels_remove_linear_attention():
    full = UNet(**TINY)
    full(inputs())
    sparse = UNet(**dict(TINY, attention_levels=(False, True)))
    sparse(inputs())
    assert isinstance(sparse.down_attn[0], keras.layers.Identity)
    assert isinstance(sparse.down_attn[1], LinearAttention)
    assert sparse.count_params() < full.count_params()


def test_all_unet_weights_get_gradients():
    unet = UNet(**TINY)
    x, t = inputs()
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(unet((x, t)) ** 2)
    grads = tape.gradient(loss, unet.trainable_variables)
    assert all(g is not None for g in grads)


def test_article_unet_has_the_companion_repository_parameter_count():
    unet = UNet()  # dim=64, dim_mults=(1, 2, 4, 8): the article's network, 32.3M parameters
    unet.build(((None, 32, 32, 1), (None,)))
    assert unet.count_params() == 32_294_837


# --- layers ----------------------------------------------------------------------------------

def test_stable_softmax_is_shift_invariant_and_finite_for_huge_logits():
    logits = tf.random.stateless_normal((2, 3, 5), seed=[1, 2]) * 4
    reference = stable_softmax(logits).numpy()
    np.testing.assert_allclose(reference.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(stable_softmax(logits + 100.0), reference, atol=1e-5)
    # At 1e4 float32 itself rounds the logits by ~5e-4, hence the looser tolerance.
    huge = logits + 1e4
    np.testing.assert_allclose(stable_softmax(huge), reference, atol=5e-3)
    # Erratum 9: subtracting the argmax *index* (a small integer) leaves exp() to overflow.
    article = huge - tf.cast(tf.argmax(huge, axis=-1)[..., None], tf.float32)
    naive = tf.exp(article) / tf.reduce_sum(tf.exp(article), axis=-1, keepdims=True)
    assert not np.all(np.isfinite(naive))


class ShiftedAttention(Attention):
    """Attention whose logits are all offset by ``shift``: softmax must not notice."""

    def __init__(self, shift, **kwargs):
        super().__init__(**kwargs)
        self.shift = shift

    def attention_logits(self, q, k):
        return super().attention_logits(q, k) + self.shift


@pytest.mark.parametrize("shift, atol", [(100.0, 1e-5), (1e4, 2e-3)])
def test_attention_output_is_invariant_to_a_constant_logit_shift(shift, atol):
    x = tf.random.stateless_normal((2, 4, 4, 16), seed=[3, 4])
    attention = Attention(heads=2, dim_head=8)
    shifted = ShiftedAttention(shift, heads=2, dim_head=8)
    out = attention(x)
    shifted(x)
    shifted.set_weights(attention.get_weights())
    assert out.shape == x.shape
    np.testing.assert_allclose(shifted(x), out, atol=atol)


def test_linear_attention_is_residual_and_keeps_shape():
    x = tf.random.stateless_normal((2, 4, 4, 16), seed=[3, 4])
    layer = LinearAttention(heads=2, dim_head=8)
    out = layer(x)
    assert out.shape == x.shape
    for w in layer.to_out.weights:  # zero attention branch -> identity
        w.assign(tf.zeros_like(w))
    layer.out_norm.beta.assign(tf.zeros_like(layer.out_norm.beta))
    np.testing.assert_allclose(layer(x), x, atol=1e-6)


def test_sinusoidal_embedding_values():
    emb = SinusoidalEmbedding(8)(tf.constant([0, 3]))
    assert emb.shape == (2, 8)
    np.testing.assert_allclose(emb[0], [0, 0, 0, 0, 1, 1, 1, 1], atol=1e-7)
    np.testing.assert_allclose(emb[1, 0], np.sin(3.0), atol=1e-6)  # lowest frequency is 1
    with pytest.raises(ValueError):
        SinusoidalEmbedding(7)


def test_resnet_block_residual_and_time_conditioning():
    x = tf.random.stateless_normal((2, 4, 4, 8), seed=[1, 1])
    emb_a, emb_b = tf.zeros((2, 12)), tf.ones((2, 12))
    widen = ResnetBlock(16, groups=4, time_emb_dim=12)
    assert widen(x, emb_a).shape == (2, 4, 4, 16) and widen.residual is not None
    assert not np.allclose(widen(x, emb_a), widen(x, emb_b))
    same = ResnetBlock(8, groups=4)
    assert same(x).shape == x.shape and same.residual is None
    with pytest.raises(ValueError, match="time_emb"):
        widen(x)
    with pytest.raises(ValueError, match="divisible"):
        ResnetBlock(6, groups=4)


def test_down_and_upsample_halve_and_double():
    x = tf.zeros((1, 8, 8, 4))
    assert Downsample(6)(x).shape == (1, 4, 4, 6)
    assert Upsample(6)(x).shape == (1, 16, 16, 6)


@pytest.mark.parametrize("layer", [
    SinusoidalEmbedding(16, max_period=500.0), ResnetBlock(16, groups=4, time_emb_dim=32),
    LinearAttention(heads=2, dim_head=8), Attention(heads=3, dim_head=4), Downsample(5), Upsample(5),
    UNet(**dict(TINY, attention_levels=(False, True))),
])
def test_config_round_trip(layer):
    config = layer.get_config()
    restored = type(layer).from_config(config)
    assert restored.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is type(layer)


def test_unet_rebuilt_from_config_with_same_weights_gives_same_output():
    unet = UNet(**TINY)
    x, t = inputs()
    out = unet((x, t))
    clone = UNet.from_config(unet.get_config())
    clone((x, t))
    clone.set_weights(unet.get_weights())
    np.testing.assert_array_equal(clone((x, t)), out)


def test_unet_keras_file_round_trip(tmp_path):
    unet = UNet(**dict(TINY, attention_levels=(False, True)))
    x, t = inputs()
    unet((x, t))
    loaded = assert_keras_round_trip(unet, tmp_path, outputs={"call": lambda m: m((x, t))}, filename="unet.keras")
    assert isinstance(loaded, UNet)


def test_unet_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        unet = UNet(**TINY)
        out = unet(inputs())
        assert unet.init_conv.compute_dtype == "float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert out.dtype == "float32" and np.all(np.isfinite(out))


def test_unet_samples_the_same_in_graph_and_step_by_step():
    unet = UNet(**TINY)
    schedule = NoiseSchedule(10)
    eps_fn = lambda x, t: unet((x, t), training=False)  # noqa: E731
    x_T = initial_noise((2, 8, 8, 1), seed=0)
    expected = sample(eps_fn, x_T, schedule, "ddim", steps=2, eta=0.5, seed=4, progress=False)
    run = tf.function(lambda x_T, steps: sample_graph(eps_fn, x_T, schedule, "ddim", steps=steps,
                                                      eta=0.5, seed=4))
    np.testing.assert_allclose(run(x_T, tf.constant(2)), expected, atol=1e-4)
