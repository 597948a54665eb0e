"""A model kind defined outside keras_gen, registered through the public API only.

``PixelBernoulli`` learns one Bernoulli mean per pixel (the data's average image) with ``fit``
and samples by thresholding stateless uniform noise against it. It is the smallest model that
satisfies the model contract (keras_gen.models.kinds), so tests can show a new family plugs
into ``keras-gen train / export / sample / evaluate / --resume`` with no edit to keras_gen/
(the CLI imports this module through ``KERAS_GEN_PLUGINS=plugins.toy_kind``).
"""

import keras
import tensorflow as tf

from keras_gen import ModelKind, register_model_kind


@keras.saving.register_keras_serializable(package="keras_gen_tests")
class PixelBernoulli(keras.Model):
    kind = "pixel_bernoulli"

    def __init__(self, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.logits = self.add_weight(shape=(28, 28, 1), initializer="zeros", name="logits")
        self.loss_tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.loss_tracker]

    def means(self):
        return tf.sigmoid(self.logits)

    def train_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        with tf.GradientTape() as tape:
            p = tf.clip_by_value(self.means(), 1e-6, 1 - 1e-6)
            loss = -tf.reduce_mean(tf.reduce_sum(x * tf.math.log(p) + (1 - x) * tf.math.log(1 - p), [1, 2, 3]))
        grads = tape.gradient(loss, [self.logits])
        self.optimizer.apply_gradients(zip(grads, [self.logits]))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def _draw(self, num_images, seed):
        u = tf.random.stateless_uniform(tf.stack([num_images, 28, 28, 1]), seed=tf.stack([seed, 0]))
        return tf.cast(u < self.means()[None], tf.float32)

    def sample(self, n, seed=0):
        return self._draw(tf.constant(int(n)), tf.constant(int(seed))).numpy()

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}

    def serving_endpoints(self):
        from keras_gen.models.serving import checked_num_images, seeded_signature

        def serving_default(num_images, seed):
            return {"images": self._draw(checked_num_images(num_images), seed)}
        return {"serving_default": (serving_default, seeded_signature())}


@register_model_kind
class PixelBernoulliKind(ModelKind):
    name = "pixel_bernoulli"
    presets = {"tiny": dict(epochs=2, batch_size=8, learning_rate=0.05, limit=2048)}

    def data_options(self, config):
        return dict(binarize=True, value_range="0_1")

    def build(self, config):
        return PixelBernoulli(seed=config["seed"])
