"""Float32 copies of mixed-precision models: for exports, and for teachers whose outputs are
differenced (progressive distillation divides by small differences of the teacher's steps)."""

from __future__ import annotations


def _float32_config(config):
    """A serialized config with every mixed-precision dtype policy replaced by float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and str(config.get("config", {}).get("name", "")).startswith("mixed"):
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {k: _float32_config(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_float32_config(v) for v in config]
    return config


def float32_model(model):
    """``model`` itself when it computes in float32, else a float32 copy with the same weights.

    A mixed-precision policy keeps float32 variables and only computes in bfloat16 / float16, so
    the copy has the same variables. Exports are always float32: how fast an export runs must
    not depend on the precision its training machine chose (bfloat16 is slower than float32 on
    CPUs without bf16 instructions).
    """
    import keras

    config = model.get_config()
    converted = _float32_config(config)
    if converted == config and all(layer.dtype_policy.name == "float32" for layer in _layers(model)):
        return model
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")  # sublayers built in __init__ follow it
    try:
        copy = type(model).from_config(converted)
    finally:
        keras.mixed_precision.set_global_policy(before)
    copy.set_weights(model.get_weights())
    return copy


def _layers(model):
    return [model] + list(model._flatten_layers(include_self=False))
