"""Tiny random-weight checkpoints of the field's sparse encoders, and the
expansions the reference libraries compute for them, for csplade's parity
tests (tests/families.rs). Nothing is fetched from a hub: every model is
built here from a small WordPiece vocabulary or SmolLM2-like settings.

    python make_sparse_fixtures.py OUT_DIR

writes OUT_DIR/
  bert-splade/            sentence-transformers SparseEncoder: BERT masked LM
                          (fill-mask Transformer) + SpladePooling(max, relu)
  distilbert-splade-sum/  the same over DistilBERT with SPLADE v1's sum pooling
  bert-splade-log1p/      BERT with SpladePooling(max, log1p_relu)
  inference-free/         a Router: queries through SparseStaticEmbedding
                          (an idf table), documents through BERT + SpladePooling
  opensearch-v1/          OpenSearch's original layout: a BertForMaskedLM
                          directory with idf.json beside it
  llama-bi-peft/          a tiny bidirectional Llama (HF directory) and a
                          PEFT LoRA adapter over it (adapter/)
  expected.json           per fixture and text: the reference's weights
                          ({token id: weight}, weights ≥ 1e-6)

Needs torch, transformers, sentence-transformers and peft (pip).
"""
import json
import os
import sys

WORDS = (
    "the a of and to in is what causes high blood pressure adults salt heart "
    "river otter stone bank heat theory water swim lie on which command copies "
    "files directories recursively list contents sort lines text search pattern "
    "flow over wing shock boundary layer pressure gradient"
).split()

TEXTS = {
    "query": ["what causes high blood pressure in adults", "which command copies files"],
    "document": [
        "Salt and heart disease: high blood pressure in adults is caused by salt.",
        "The otter swims in the river; a stone lies on the bank.",
        "Boundary layer flow over a wing with a shock and a pressure gradient.",
    ],
}


def vocab():
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    punct = list(".,;:?!'")
    words = sorted(set(WORDS))
    pieces = ["##" + c for c in letters] + ["##es", "##ed", "##ing"]
    out = []
    for t in special + punct + letters + words + pieces:
        if t not in out:
            out.append(t)
    return out


def tokenizer(d):
    from transformers import BertTokenizerFast

    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab()) + "\n")
    return BertTokenizerFast(os.path.join(d, "vocab.txt"), do_lower_case=True)


def bert(d, torch, seed):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    tok = tokenizer(d)
    cfg = BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, type_vocab_size=2,
    )
    m = BertForMaskedLM(cfg)
    # Larger logits than the default init, so that ReLU leaves terms active.
    with torch.no_grad():
        m.cls.predictions.bias.normal_(0.5, 1.0)
    m.eval()
    m.save_pretrained(d)
    tok.save_pretrained(d)
    return m, tok


def distilbert(d, torch, seed):
    from transformers import DistilBertConfig, DistilBertForMaskedLM, DistilBertTokenizerFast

    torch.manual_seed(seed)
    tokenizer(d)
    tok = DistilBertTokenizerFast(os.path.join(d, "vocab.txt"), do_lower_case=True)
    cfg = DistilBertConfig(
        vocab_size=len(tok), dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64,
    )
    m = DistilBertForMaskedLM(cfg)
    with torch.no_grad():
        m.vocab_projector.bias.normal_(0.5, 1.0)
    m.eval()
    m.save_pretrained(d)
    tok.save_pretrained(d)
    return m, tok


def splade(d, arch, pooling, activation, torch, seed):
    """A SparseEncoder saved in sentence-transformers' layout."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.models import MLMTransformer, SpladePooling

    raw = os.path.join(SCRATCH, os.path.basename(d) + "-hf")
    arch(raw, torch, seed)
    mlm = MLMTransformer(raw)
    pool = SpladePooling(pooling_strategy=pooling, activation_function=activation)
    enc = SparseEncoder(modules=[mlm, pool])
    enc.save(d)
    return enc


def sparse(v):
    """{token id: weight} of a dense tensor, weights ≥ 1e-6."""
    v = v.to_dense() if v.is_sparse else v
    return {int(i): float(v[i]) for i in (v > 1e-6).nonzero().flatten().tolist()}


SCRATCH = None


def main():
    global SCRATCH
    import tempfile

    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    SCRATCH = tempfile.mkdtemp(prefix="csplade-fixtures-")
    import torch
    from sentence_transformers import SparseEncoder

    expected = {}
    for name, arch, pooling, act, seed in [
        ("bert-splade", bert, "max", "relu", 1),
        ("distilbert-splade-sum", distilbert, "sum", "relu", 2),
        ("bert-splade-log1p", bert, "max", "log1p_relu", 3),
    ]:
        d = os.path.join(out, name)
        enc = splade(d, arch, pooling, act, torch, seed)
        enc = SparseEncoder(d)  # read back as a user would
        texts = TEXTS["query"] + TEXTS["document"]
        emb = enc.encode(texts, convert_to_tensor=True)
        expected[name] = [{"text": t, "weights": sparse(e)} for t, e in zip(texts, emb)]
    expected.update(inference_free(out, torch))
    expected.update(opensearch_v1(out, torch))
    expected.update(llama_bi_peft(out, torch))
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=0, sort_keys=True)
    # Model cards and version notes are not what csplade reads.
    for root, _, files in os.walk(out):
        for name in files:
            if name in ("README.md", "generation_config.json"):
                os.remove(os.path.join(root, name))


def inference_free(out, torch):
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Router
    from sentence_transformers.sparse_encoder.models import (
        MLMTransformer,
        SparseStaticEmbedding,
        SpladePooling,
    )

    raw = os.path.join(SCRATCH, "inference-free-doc-hf")
    _, tok = bert(raw, torch, 4)
    torch.manual_seed(5)
    weight = torch.rand(len(tok)) * 3.0
    weight[:5] = 0.0  # special tokens never weigh
    query = SparseStaticEmbedding(tokenizer=tok, weight=weight, frozen=True)
    doc = [MLMTransformer(raw), SpladePooling(pooling_strategy="max")]
    router = Router.for_query_document(query_modules=[query], document_modules=doc)
    d = os.path.join(out, "inference-free")
    SparseEncoder(modules=[router]).save(d)
    enc = SparseEncoder(d)
    q = enc.encode_query(TEXTS["query"], convert_to_tensor=True)
    dv = enc.encode_document(TEXTS["document"], convert_to_tensor=True)
    return {
        "inference-free/query": [{"text": t, "weights": sparse(e)} for t, e in zip(TEXTS["query"], q)],
        "inference-free/document": [
            {"text": t, "weights": sparse(e)} for t, e in zip(TEXTS["document"], dv)
        ],
    }


def opensearch_v1(out, torch):
    """OpenSearch's first inference-free layout: the document model as a
    BertForMaskedLM directory, idf.json beside it; documents pooled with max
    of log(1 + ReLU(logits)) with special tokens zeroed; queries are their
    tokens weighted by idf.json."""
    d = os.path.join(out, "opensearch-v1")
    m, tok = bert(d, torch, 6)
    torch.manual_seed(7)
    vocab = tok.get_vocab()
    idf = {t: round(float(torch.rand(1)) * 4.0, 4) for t in sorted(vocab) if not t.startswith("[")}
    with open(os.path.join(d, "idf.json"), "w") as f:
        json.dump(idf, f, indent=0, sort_keys=True)
    special = [tok.convert_tokens_to_ids(t) for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]]
    docs = []
    for t in TEXTS["document"]:
        x = tok([t], return_tensors="pt")
        with torch.no_grad():
            logits = m(**x).logits
        v = torch.max(logits * x["attention_mask"].unsqueeze(-1), dim=1).values
        v = torch.log1p(torch.relu(v))[0]
        v[special] = 0
        docs.append({"text": t, "weights": sparse(v)})
    queries = []
    for t in TEXTS["query"]:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        w = torch.zeros(len(vocab))
        for i in set(ids):
            w[i] = idf.get(tok.convert_ids_to_tokens(i), 0.0)
        queries.append({"text": t, "weights": sparse(w)})
    return {"opensearch-v1/document": docs, "opensearch-v1/query": queries}


def llama_bi_peft(out, torch):
    """A tiny Llama read bidirectionally with a PEFT LoRA adapter, raw head
    with a logit scale: w = log(1 + ReLU(max_t logit_t · scale))."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers

    d = os.path.join(out, "llama-bi-peft")
    os.makedirs(d, exist_ok=True)
    words = ["<unk>", "<s>", "</s>"] + sorted(set(WORDS)) + list(".,;:?!'")
    t = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=t, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    torch.manual_seed(8)
    cfg = LlamaConfig(
        vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=10000.0,
    )
    m = LlamaForCausalLM(cfg)
    m.save_pretrained(d)
    tok.save_pretrained(d)
    torch.manual_seed(9)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0)
    pm = get_peft_model(m, lora)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.2)
    pm.save_pretrained(os.path.join(d, "adapter"))
    merged = pm.merge_and_unload().eval()
    scale = 0.5
    texts = TEXTS["query"] + TEXTS["document"]
    res = []
    for text in texts:
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        n = ids.shape[1]
        # Bidirectional: an all-zero additive mask (no causal masking).
        mask = torch.zeros((1, 1, n, n))
        with torch.no_grad():
            logits = merged(input_ids=ids, attention_mask=mask).logits[0]
        v = torch.log1p(torch.relu(logits.max(dim=0).values * scale))
        res.append({"text": text, "weights": sparse(v)})
    return {"llama-bi-peft": res}


if __name__ == "__main__":
    main()
