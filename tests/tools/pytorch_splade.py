"""PyTorch reference of `csplade bench splade`: a BERT-base-sized SPLADE
encoder (random weights: speed does not depend on them) written as a
sentence-transformers SparseEncoder, and the time its `encode` takes.

    python pytorch_splade.py REQUEST.json RESULT.json

REQUEST: {"dir": OUT_DIR, "texts": N, "words": W, "batch": B, "threads": T,
"repeat": R, "seed": S}: writes the model to OUT_DIR (config.json,
model.safetensors, vocab.txt, tokenizer.json, modules.json,
1_SpladePooling/), makes N texts of W words from its vocabulary, encodes
them once to warm up, then R times, and writes RESULT: {"torch": version,
"sentence_transformers": version, "texts": [...], "tokens": total tokens
with special tokens, "seconds": best}.

Needs torch, transformers and sentence-transformers.
"""
import json
import os
import random
import sys
import time


def main():
    req = json.load(open(sys.argv[1]))
    import torch
    import sentence_transformers
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.models import MLMTransformer, SpladePooling
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    torch.set_num_threads(req["threads"])
    torch.manual_seed(req["seed"])
    rng = random.Random(req["seed"])
    out = req["dir"]
    raw = os.path.join(out, "hf")
    os.makedirs(raw, exist_ok=True)
    cfg = BertConfig()  # bert-base: 12 layers, width 768, 30,522 entries
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    words = []
    while len(specials) + len(letters) + len(words) < cfg.vocab_size:
        n = len(words)
        words.append("".join(letters[(n // 26**k) % 26] for k in range(3)) + str(n % 97))
    vocab = specials + letters + words
    with open(os.path.join(raw, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(os.path.join(raw, "vocab.txt"), do_lower_case=True)
    BertForMaskedLM(cfg).eval().save_pretrained(raw)
    tok.save_pretrained(raw)
    enc = SparseEncoder(modules=[MLMTransformer(raw), SpladePooling(pooling_strategy="max")])
    enc.save(out)
    enc = SparseEncoder(out, device="cpu")
    texts = [" ".join(rng.choice(words) for _ in range(req["words"])) for _ in range(req["texts"])]
    tokens = sum(len(tok(t)["input_ids"]) for t in texts)
    enc.encode(texts[: req["batch"]], batch_size=req["batch"])
    best = None
    for _ in range(req["repeat"]):
        start = time.perf_counter()
        enc.encode(texts, batch_size=req["batch"])
        s = time.perf_counter() - start
        best = s if best is None else min(best, s)
    json.dump(
        {
            "torch": torch.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "texts": texts,
            "tokens": tokens,
            "seconds": best,
        },
        open(sys.argv[2], "w"),
    )


if __name__ == "__main__":
    main()
