"""PyTorch reference of `csplade bench train --compare-pytorch`.

The same contrastive step csplade's engines take, on the same micro-batches:
Hugging Face transformers' LlamaForCausalLM reading the same model file,
peft LoRA adapters on the same projections (rank, alpha), the text laid out
for the variant (Echo repeats it and pools the second copy), the
log-probability head w = log(1 + ReLU(max_t log_softmax(logits_t) + C + b))
with learned per-term shifts b when csplade learns them, InfoNCE over the
micro-batch's documents (query i's positive is document i) plus
λ_q·FLOPS(queries) + λ_d·FLOPS(documents), backward, AdamW. One warm-up
step, then `steps` timed steps on `threads` threads.

    python pytorch_train.py REQUEST.json RESULT.json

REQUEST: {"model": {"gguf": PATH} or {"hf": DIR}, "micro_batches": [{"queries":
[[ids]...], "docs": [[ids]...]}...], "variant": "echo"|"causal", "head":
"logprob:C"|"raw", "rank": R, "alpha": A, "targets": [names], "lr": LR,
"lambda_q": Q, "lambda_d": D, "learn_term_shift": bool, "threads": N}.
RESULT: {"torch": version, "transformers": version, "peft": version,
"steps": [{"seconds": s, "tokens": n, "loss": l}...]} (warm-up first).

Needs torch, transformers, peft and, for a .gguf, gguf and accelerate.
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
        return LlamaForCausalLM.from_pretrained(where, dtype=torch.float32, **kw)
    except TypeError:  # transformers before 4.56 names it torch_dtype
        return LlamaForCausalLM.from_pretrained(where, torch_dtype=torch.float32, **kw)


def layout(ids, variant):
    """(tokens as fed, first pooled position)."""
    if variant == "echo":
        return ids + ids, len(ids)
    return list(ids), 0


def expansions(m, texts, req, shift, term_shift, torch):
    """[texts, vocab] sparse vectors, on the autograd graph."""
    laid = [layout(t, req["variant"]) for t in texts]
    t = max(len(x) for x, _ in laid)
    tokens = torch.zeros((len(laid), t), dtype=torch.long)
    mask = torch.zeros((len(laid), t), dtype=torch.long)
    pooled = torch.zeros((len(laid), t, 1), dtype=torch.bool)
    for i, (x, first) in enumerate(laid):
        tokens[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
        pooled[i, first : len(x)] = True
    logits = m(input_ids=tokens, attention_mask=mask).logits
    if shift is not None:
        logits = torch.log_softmax(logits, dim=-1)
    logits = logits.masked_fill(~pooled, -1e9)
    best = logits.max(dim=1).values
    if shift is not None:
        best = best + shift
        if term_shift is not None:
            best = best + term_shift
    return torch.log1p(torch.relu(best)), sum(len(x) for x, _ in laid)


def main():
    req = json.load(open(sys.argv[1]))
    import torch
    import transformers
    import peft

    torch.set_num_threads(req["threads"])
    torch.manual_seed(0)
    base = load(req["model"], torch)
    config = peft.LoraConfig(
        r=req["rank"], lora_alpha=req["alpha"], target_modules=req["targets"], lora_dropout=0.0
    )
    m = peft.get_peft_model(base, config)
    m.train()
    head = req["head"]
    shift = float(head.split(":", 1)[1]) if head.startswith("logprob:") else None
    vocab = base.config.vocab_size
    term_shift = None
    params = [p for p in m.parameters() if p.requires_grad]
    if req["learn_term_shift"] and shift is not None:
        term_shift = torch.zeros(vocab, requires_grad=True)
        params.append(term_shift)
    opt = torch.optim.AdamW(params, lr=req["lr"], weight_decay=0.0)
    steps = []
    for mb in req["micro_batches"]:
        start = time.perf_counter()
        opt.zero_grad()
        wq, tq = expansions(m, mb["queries"], req, shift, term_shift, torch)
        wd, td = expansions(m, mb["docs"], req, shift, term_shift, torch)
        scores = wq @ wd.T
        target = torch.arange(wq.shape[0])
        infonce = torch.nn.functional.cross_entropy(scores, target)
        flops_q = (wq.mean(0) ** 2).sum()
        flops_d = (wd.mean(0) ** 2).sum()
        loss = infonce + req["lambda_q"] * flops_q + req["lambda_d"] * flops_d
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        steps.append(
            {"seconds": time.perf_counter() - start, "tokens": tq + td, "loss": float(loss)}
        )
    json.dump(
        {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "steps": steps,
        },
        open(sys.argv[2], "w"),
    )


if __name__ == "__main__":
    main()
