"""SmoothQuant-style scale migration for static INT8 (Xiao et al., 2023), on ONNX graphs.

A MatMul ``y = x @ W`` is unchanged by ``y = (x / s) @ (diag(s) W)``. Choosing per input channel
``s_j = max|x_j|^alpha / max|W_j,:|^(1 - alpha)`` moves the range of outlier activation channels into the
weights, where per-channel weight scales absorb it, so both operands quantize with small error.

In a post-LayerNorm encoder (BERT and its family) the tensor a MatMul reads also feeds the residual
``Add``, so ``1/s`` cannot be folded into the LayerNorm as in decoder LLMs: a ``Mul`` by ``1/s`` is
inserted in front of the MatMuls that read the tensor (one per tensor, shared by Q/K/V), and the residual
keeps the original. The Mul is one element-wise op per smoothed tensor.
"""

from __future__ import annotations

import os

import numpy as np

from edgepack.errors import EdgepackError

_CONSUMERS = ("MatMul", "Attention")


def _groups(model) -> dict[str, list]:
    """Activation tensor -> the MatMul/Attention nodes that read it with a constant 2-D float weight."""
    inits = {i.name: i for i in model.graph.initializer}
    groups: dict[str, list] = {}
    for node in model.graph.node:
        if node.op_type not in _CONSUMERS or len(node.input) < 2:
            continue
        w = inits.get(node.input[1])
        if w is not None and len(w.dims) == 2 and w.data_type == 1 and node.input[0] not in inits:
            groups.setdefault(node.input[0], []).append(node)
    return groups


def _channel_absmax(model, names: list[str], batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """max |x_j| over real tokens of every tensor in ``names``, on the calibration batches."""
    from edgepack.quantize.graph import probe_activations, real_rows

    amax: dict[str, np.ndarray] = {}
    for acts, mask in probe_activations(model, names, batches):
        for n in names:
            m = np.abs(real_rows(acts[n], mask)).max(axis=0)
            amax[n] = m if n not in amax else np.maximum(amax[n], m)
    return amax


def smooth_model(src: str | os.PathLike, dst: str | os.PathLike, batches: list[dict[str, np.ndarray]],
                 alpha: float = 0.5) -> dict:
    """Write ``src`` with SmoothQuant scales migrated into its MatMul weights to ``dst``; returns statistics."""
    import onnx
    from onnx import numpy_helper

    if not 0.0 <= alpha <= 1.0:
        raise EdgepackError(f"smooth_alpha must be in [0, 1], got {alpha}")
    if not batches:
        raise EdgepackError("smoothing needs calibration batches; none were given")
    model = onnx.load(str(src))
    groups = _groups(model)
    amax = _channel_absmax(model, list(groups), batches)
    inits = {i.name: i for i in model.graph.initializer}
    users: dict[str, int] = {}
    for node in model.graph.node:
        for i in node.input:
            users[i] = users.get(i, 0) + 1
    first_use = {}
    for idx, node in enumerate(model.graph.node):
        for i in node.input:
            first_use.setdefault(i, idx)
    new_nodes: list[tuple[int, object]] = []
    worst = 1.0
    for x_name, nodes in groups.items():
        a = amax[x_name].astype(np.float64)
        ws = [numpy_helper.to_array(inits[n.input[1]]).astype(np.float64) for n in nodes]
        if any(w.shape[0] != a.shape[0] for w in ws):
            continue
        w_max = np.max([np.abs(w).max(axis=1) for w in ws], axis=0)
        s = np.where((a > 0) & (w_max > 0), a ** alpha / np.maximum(w_max, 1e-12) ** (1 - alpha), 1.0)
        s = np.clip(s, 1e-4, 1e4)
        worst = max(worst, float(a.max() / max(np.median(a), 1e-12)))
        smoothed = f"{x_name}/smoothquant"
        scale_name = f"{x_name}/smoothquant_inv_scale"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), scale_name))
        new_nodes.append((first_use[x_name], onnx.helper.make_node("Mul", [x_name, scale_name], [smoothed],
                                                                   name=f"{x_name}/SmoothQuantMul")))
        for node, w in zip(nodes, ws):
            init = inits[node.input[1]]
            scaled = (w * s[:, None]).astype(np.float32)
            if users.get(node.input[1], 0) > 1:  # a weight shared with other nodes gets its own copy
                name = f"{node.input[1]}/smoothquant_{node.name}"
                model.graph.initializer.append(numpy_helper.from_array(scaled, name))
                node.input[1] = name
            else:
                init.CopyFrom(numpy_helper.from_array(scaled, init.name))
            node.input[0] = smoothed
    for idx, mul in sorted(new_nodes, key=lambda t: -t[0]):  # insert before the first reader, keeping order
        model.graph.node.insert(idx, mul)
    onnx.save(model, str(dst))
    return {"smoothed_tensors": len(new_nodes), "max_channel_ratio": round(worst, 1), "smooth_alpha": alpha}
