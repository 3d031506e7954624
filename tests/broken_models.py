"""Deliberately broken copies of an ONNX model, for the accuracy gate's tests and bench/accuracy_gate.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def break_outputs(src: Path, dst: Path, *, scale: float, shift: float = 0.0) -> None:
    """Every output becomes ``output * scale + shift`` (0 and 0.5: constant; NaN: NaN; -1: sign-flipped)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    for out in g.output:
        raw = out.name + "__raw"
        for node in g.node:
            node.output[:] = [raw if o == out.name else o for o in node.output]
        g.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), out.name + "__scale"),
                              numpy_helper.from_array(np.array(shift, np.float32), out.name + "__shift")])
        g.node.extend([helper.make_node("Mul", [raw, out.name + "__scale"], [out.name + "__mul"]),
                       helper.make_node("Add", [out.name + "__mul", out.name + "__shift"], [out.name])])
    onnx.save(model, str(dst))


def zero_weights(src: Path, dst: Path) -> None:
    """Every quantized weight and bias (the inputs of DequantizeLinear held as initializers) set to 0."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    dq_inputs = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    count = 0
    for init in model.graph.initializer:
        if init.name in dq_inputs and len(init.dims) >= 1:
            init.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(init)), init.name))
            count += 1
    if count < 2:
        raise ValueError(f"{src}: {count} quantized weights found; expected a static QDQ model")
    onnx.save(model, str(dst))
