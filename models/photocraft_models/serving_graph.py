"""U²-Net-p as one ONNX graph with its pre- and post-processing, for Triton's onnxruntime backend.

``model.serving.onnx`` has the tensor contract of the python-backend model
(``segmentation.U2Net``), so that a GPU node can serve it with Triton's
onnxruntime backend and the TensorRT accelerator, and clients see no difference:

    IMAGE uint8 (N, 320, 320, 3) RGB  ->  MASK float32 (N, 320, 320) in [0, 1]

It computes what ``U2Net.batch`` computes in numpy: each image scaled by its
own maximum, normalised with the ImageNet mean and standard deviation, NHWC to
NCHW; the fp32 U²-Net-p; its fused output d0 min-max normalised per image.
The side outputs d1..d6 are pruned. ``weights.py install`` writes it next to
the verified weights (a derived file, deterministic: same input, same bytes).

    python -m photocraft_models.serving_graph model.onnx model.serving.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SERVING_FILE = "model.serving.onnx"
SIDE = 320  # px, U²-Net-p's input side
EPSILON = 1e-6  # as in segmentation.U2Net: no division by zero for black images or flat masks
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def batchable(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` that takes any batch size N on its first axis.

    The rembg export fixes N = 1 in its inputs and outputs, and graphs prepared
    for quantization (model.int8.onnx) resize with constant ``sizes`` whose
    first entry is 1: those become N (taken from the Resize input's shape)
    followed by the constant rest. Stale ``value_info`` shapes are dropped.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    for value in [*graph.input, *graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    del graph.value_info[:]
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    batch_index = "batchable/batch_index"
    nodes: list[onnx.NodeProto] = []
    for index, node in enumerate(graph.node):
        sizes = constants.get(node.input[3]) if node.op_type == "Resize" and len(node.input) > 3 else None
        if sizes is not None and sizes.shape == (4,) and sizes[0] == 1:
            prefix = f"batchable/resize{index}"
            graph.initializer.append(numpy_helper.from_array(sizes[1:].astype(np.int64), f"{prefix}/rest"))
            nodes += [  # just before the Resize, whose input they read: the order stays topological
                helper.make_node("Shape", [node.input[0]], [f"{prefix}/shape"], name=f"{prefix}/Shape"),
                helper.make_node("Gather", [f"{prefix}/shape", batch_index], [f"{prefix}/n"],
                                 name=f"{prefix}/Gather", axis=0),
                helper.make_node("Concat", [f"{prefix}/n", f"{prefix}/rest"], [f"{prefix}/sizes"],
                                 name=f"{prefix}/Concat", axis=0),
            ]
            node.input[3] = f"{prefix}/sizes"
        nodes.append(node)
    if len(nodes) > len(graph.node):
        graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), batch_index))
        del graph.node[:]
        graph.node.extend(nodes)
    return model


def _const(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, np.float32), name)


def serving_model(u2netp: onnx.ModelProto) -> onnx.ModelProto:
    """The serving graph around the fp32 U²-Net-p ``u2netp`` (the rembg export, opset 11)."""
    core = batchable(u2netp)
    graph = core.graph
    opset = _opset(core)
    if not 11 <= opset <= 17:  # ReduceMin/ReduceMax take axes as an attribute up to opset 17
        raise ValueError(f"expected a U²-Net-p export with opset 11..17, not {opset}")
    network_input, fused = graph.input[0].name, graph.output[0].name
    p = "serving/"
    pre = [
        helper.make_node("Cast", ["IMAGE"], [p + "x"], name=p + "Cast", to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", [p + "x"], [p + "peak"], name=p + "Peak", axes=[1, 2, 3], keepdims=1),
        helper.make_node("Max", [p + "peak", p + "epsilon"], [p + "peak_safe"], name=p + "PeakSafe"),
        helper.make_node("Div", [p + "x", p + "peak_safe"], [p + "unit"], name=p + "Scale"),
        helper.make_node("Sub", [p + "unit", p + "mean"], [p + "centred"], name=p + "SubtractMean"),
        helper.make_node("Div", [p + "centred", p + "std"], [p + "normalised"], name=p + "DivideStd"),
        helper.make_node("Transpose", [p + "normalised"], [network_input], name=p + "ToNCHW", perm=[0, 3, 1, 2]),
    ]
    squeeze = (helper.make_node("Squeeze", [p + "scaled"], ["MASK"], name=p + "Squeeze", axes=[1]) if opset < 13
               else helper.make_node("Squeeze", [p + "scaled", p + "channel_axis"], ["MASK"], name=p + "Squeeze"))
    post = [
        helper.make_node("ReduceMin", [fused], [p + "low"], name=p + "Low", axes=[2, 3], keepdims=1),
        helper.make_node("ReduceMax", [fused], [p + "high"], name=p + "High", axes=[2, 3], keepdims=1),
        helper.make_node("Sub", [p + "high", p + "low"], [p + "span"], name=p + "Span"),
        helper.make_node("Max", [p + "span", p + "epsilon"], [p + "span_safe"], name=p + "SpanSafe"),
        helper.make_node("Sub", [fused, p + "low"], [p + "shifted"], name=p + "Shift"),
        helper.make_node("Div", [p + "shifted", p + "span_safe"], [p + "scaled"], name=p + "Normalise"),
        squeeze,
    ]
    graph.initializer.extend([
        _const(p + "epsilon", EPSILON),
        _const(p + "mean", np.reshape(IMAGENET_MEAN, (1, 1, 1, 3))),
        _const(p + "std", np.reshape(IMAGENET_STD, (1, 1, 1, 3))),
    ])
    if opset >= 13:
        graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), p + "channel_axis"))
    nodes = pre + list(graph.node) + post
    del graph.node[:]
    graph.node.extend(_pruned(nodes, "MASK"))
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info("IMAGE", TensorProto.UINT8, ["N", SIDE, SIDE, 3]))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("MASK", TensorProto.FLOAT, ["N", SIDE, SIDE]))
    used = {i for n in graph.node for i in n.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    graph.name = "u2netp_serving"
    core.producer_name, core.producer_version = "photocraft", "1"
    onnx.checker.check_model(core)
    return core


def _pruned(nodes: list[onnx.NodeProto], output: str) -> list[onnx.NodeProto]:
    """The nodes that ``output`` depends on, in their order."""
    needed, kept = {output}, []
    for node in reversed(nodes):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    return kept[::-1]


def write(fp32: Path, target: Path) -> Path:
    """Build the serving graph from the fp32 model file ``fp32`` and write it to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(serving_model(onnx.load(fp32)).SerializeToString())
    partial.replace(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fp32", type=Path, help="the fp32 U²-Net-p (model.onnx)")
    parser.add_argument("target", type=Path, help="where to write the serving graph")
    args = parser.parse_args()
    print(f"wrote {write(args.fp32, args.target)}")


if __name__ == "__main__":
    main()
