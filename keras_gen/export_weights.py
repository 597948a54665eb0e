"""Read an export's weights back into a Keras model built from the export's config.

A SavedModel written by keras.export.ExportArchive lists its variables in an order that differs
from process to process, and names them only by their layer's short name ("u_net/bias"). What
is stable is *where each variable is read*: the name of the ``ReadVariableOp`` that reads it in
the ``serving_default`` function, or in the first other signature that reads it, followed into
while-loop bodies and function calls and taken within the function that holds it (e.g.
``u_net_1/down0_res1/conv1/convolution/ReadVariableOp``): so exports whose loops call the network
inline and those that call one shared function (keras_gen >= the shared-network export) match.
Two variables with one reader name fail the match loudly. `copy_export_weights` exports the
freshly built model once to a temporary folder, with every variable set to a distinct marker
value, and matches the two exports' variables by those reader names.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

from keras_gen.checkpointing import canonical_paths, variable_names

_CALL_ATTRS = ("body", "f", "then_branch", "else_branch")
# Layer names ("dense_3") and TensorFlow's name scopes ("dense_3_1") number per process.
_OP_AUTO_NUMBER = re.compile(r"(_\d+)+$")
# Name scopes of control flow and function calls, which depend on how a loop calls the network
# (inline in its body: "while/u_net/...", or through a shared function: "u_net/...").
_CONTROL_SCOPE = re.compile(r"^((while|cond|(Stateful)?PartitionedCall)(_\d+)?/)+")


def _reader_names(export_dir) -> dict[int, str]:
    """{position in the export's variable list: name of the op that reads it in serving_default},
    with the per-process numbering of layer and scope names renumbered (`canonical_paths`)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((Path(export_dir) / "saved_model.pb").read_bytes())
    meta = saved.meta_graphs[0]
    graph, library = meta.object_graph_def, {f.signature.name: f for f in meta.graph_def.library.function}
    children = {c.local_name: c.node_id for c in graph.nodes[0].children}
    position = {c.node_id: k for k, c in enumerate(graph.nodes[children["_all_variables"]].children)}
    names: dict[int, str] = {}

    def walk(fdef, arg_positions):
        for node in fdef.node_def:
            if node.op == "ReadVariableOp" and node.input[0] in arg_positions:
                names.setdefault(arg_positions[node.input[0]], _CONTROL_SCOPE.sub("", node.name))
            for attr in _CALL_ATTRS:
                if attr in node.attr and node.attr[attr].func.name in library:
                    callee = library[node.attr[attr].func.name]
                    inputs = list(node.input)[1:] if node.op == "If" else list(node.input)
                    mapping = {arg.name: arg_positions[inp] for arg, inp in zip(callee.signature.input_arg, inputs)
                               if inp in arg_positions}
                    if mapping:
                        walk(callee, mapping)

    # Every endpoint, serving_default first, then by name: a variable gets the name of its first
    # reader, and variables only another signature reads (a VAE's encoder in `encode`) get one too.
    endpoints = sorted((name for name, node in children.items()
                        if graph.nodes[node].WhichOneof("kind") == "function"),
                       key=lambda name: (name != "serving_default", name))
    for endpoint in endpoints:
        function_name = graph.nodes[children[endpoint]].function.concrete_functions[0]
        bound = graph.concrete_functions[function_name].bound_inputs
        function = library[function_name]
        args = [a.name for a in function.signature.input_arg]
        walk(function, {arg: position[node] for arg, node in zip(args[len(args) - len(bound):], bound)})
    return dict(zip(names, canonical_paths(list(names.values()), _OP_AUTO_NUMBER)))


def weight_names(model) -> dict[int, str]:
    """{id(weight): name} for ``model.weights``, the names `copy_export_weights` reports
    (`checkpointing.variable_names`: unique, where Keras paths repeat)."""
    return dict(zip(map(id, model.weights), variable_names(model.weights)))


def copy_export_weights(model, export_dir) -> tuple[str, ...]:
    """Assign the weights of the export at ``export_dir`` to ``model`` (built from its config).

    Only variables the export holds are set (those its signatures read). Returns the names
    (`checkpointing.variable_names` of ``model.weights``) of the weights that were not set, which
    keep their initial values: what the export's signatures never read (a DDPM's raw U-Net, a
    latent DDPM's encoder). ValueError when the
    export's variables cannot all be matched to the model's.
    """
    import tensorflow as tf

    from keras_gen.export import export_saved_model

    with tempfile.TemporaryDirectory() as tmp:
        marked = Path(tmp) / "marked"
        originals = [v.numpy() for v in model.variables]
        for k, v in enumerate(model.variables):
            v.assign(np.full(v.shape, k + 1, dtype=v.dtype))
        try:
            export_saved_model(model, marked)
            ours = tf.saved_model.load(str(marked))._all_variables
            our_names = {name: int(ours[pos].numpy().flat[0]) - 1 for pos, name in _reader_names(marked).items()}
        finally:
            for v, value in zip(model.variables, originals):
                v.assign(value)
    theirs = tf.saved_model.load(str(export_dir))._all_variables
    their_names = _reader_names(export_dir)
    # An export may hold fewer variables than the model (e.g. a VAE exported before `encode`
    # existed holds no encoder): those it holds must all match, once each.
    if len(set(their_names.values())) != len(their_names) or len(their_names) != len(theirs) \
            or not set(their_names.values()) <= set(our_names):
        raise ValueError(f"{export_dir}: its variables do not match the model built from its config")
    for pos, name in their_names.items():
        target = model.variables[our_names[name]]
        if tuple(target.shape) != tuple(theirs[pos].shape):
            raise ValueError(f"{export_dir}: {name} has shape {tuple(theirs[pos].shape)}, the model's "
                             f"{target.path} {tuple(target.shape)}")
        target.assign(theirs[pos])
    restored = {id(model.variables[our_names[name]]) for name in their_names.values()}
    return tuple(name for key, name in weight_names(model).items() if key not in restored)
