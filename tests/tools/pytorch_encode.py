"""PyTorch reference of `csplade bench encode --compare-pytorch`.

The token sequences csplade encodes (already laid out for the variant: Echo
repeats the text and pools the second copy) go through Hugging Face
transformers' LlamaForCausalLM reading the same model file, at f32 and with
torch's dynamic int8 quantization of every nn.Linear (the LM head included).
The sparse head is the same as csplade's: per text, the maximum over its
pooled positions of the LM-head score (the raw logit, or the log-probability
plus a shift), then log(1 + ReLU(.)). Timing follows csplade's bench: one
warm-up batch, then the best of `repeat` passes over every text, batched and
right-padded, on `threads` threads.

    python pytorch_encode.py REQUEST.json RESULT.json

REQUEST: {"model": {"gguf": PATH} or {"hf": DIR}, "inputs": [[ids]...],
"pool_from": [first pooled position per text], "batch": B, "threads": N,
"repeat": R, "modes": ["f32", "int8"], "head": "raw" or "logprob:C",
"top": K}. RESULT: {"torch": version, "transformers": version,
"modes": {mode: {"seconds": best, "top": [[[id, weight]...] per text]}}}.

Needs torch, transformers and, for a .gguf, gguf and accelerate: pip install torch
transformers gguf accelerate.
"""
import json
import os
import sys
import time


def load(model, torch):
    from transformers import LlamaForCausalLM

    if "gguf" in model:
        path = model["gguf"]
        kw = {"gguf_file": os.path.basename(path)}
        where = os.path.dirname(os.path.abspath(path))
    else:
        where, kw = model["hf"], {}
    try:
        m = LlamaForCausalLM.from_pretrained(where, dtype=torch.float32, **kw)
    except TypeError:  # transformers before 4.56 names it torch_dtype
        m = LlamaForCausalLM.from_pretrained(where, torch_dtype=torch.float32, **kw)
    return m.eval()


def encode_all(m, req, torch):
    """Sparse vectors (dense [texts, vocab] tensors) of every input."""
    head = req["head"]
    shift = float(head.split(":", 1)[1]) if head.startswith("logprob:") else None
    out = []
    inputs, starts, b = req["inputs"], req["pool_from"], req["batch"]
    for s in range(0, len(inputs), b):
        ids, first = inputs[s : s + b], starts[s : s + b]
        t = max(len(x) for x in ids)
        tokens = torch.zeros((len(ids), t), dtype=torch.long)
        mask = torch.zeros((len(ids), t), dtype=torch.long)
        pooled = torch.zeros((len(ids), t, 1), dtype=torch.bool)
        for i, (x, f) in enumerate(zip(ids, first)):
            tokens[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
            pooled[i, f : len(x)] = True
        hidden = m.model(input_ids=tokens, attention_mask=mask).last_hidden_state
        scores = m.lm_head(hidden)
        if shift is not None:
            scores = torch.log_softmax(scores, dim=-1) + shift
        scores = scores.masked_fill(~pooled, float("-inf")).amax(dim=1)
        out.append(torch.log1p(torch.relu(scores)))
    return torch.cat(out)


def top_terms(w, k, torch):
    vals, idx = torch.topk(w, k, dim=1)
    return [
        [[int(i), float(v)] for i, v in zip(ri, rv) if v > 0]
        for ri, rv in zip(idx.tolist(), vals.tolist())
    ]


def main():
    req = json.load(open(sys.argv[1]))
    import torch
    import transformers

    torch.set_num_threads(req["threads"])
    base = load(req["model"], torch)
    result = {"torch": torch.__version__, "transformers": transformers.__version__, "modes": {}}
    for mode in req["modes"]:
        if mode == "f32":
            m = base
        elif mode == "int8":
            m = torch.ao.quantization.quantize_dynamic(base, {torch.nn.Linear}, dtype=torch.qint8)
        else:
            raise SystemExit(f"unknown mode {mode!r}: f32 or int8")
        with torch.inference_mode():
            warm = dict(req, inputs=req["inputs"][: req["batch"]], pool_from=req["pool_from"][: req["batch"]])
            encode_all(m, warm, torch)
            best, w = float("inf"), None
            for _ in range(max(1, req["repeat"])):
                t0 = time.perf_counter()
                w = encode_all(m, req, torch)
                best = min(best, time.perf_counter() - t0)
        result["modes"][mode] = {"seconds": best, "top": top_terms(w, req["top"], torch)}
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
