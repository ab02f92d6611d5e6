"""Index a CIFF file with PISA (the pyterrier-pisa wheel) and answer weighted
queries with its quantized (impact) scorer, for tests/export.rs.

    pisa_search.py CIFF INDEX_DIR QUERIES.json RESULTS.json K ALGORITHM

QUERIES.json: {"qid": {"term": integer weight, ...}, ...}. RESULTS.json gets
{"qid": [["docno", score], ...]} in PISA's rank order. ALGORITHM is one of
PISA's query algorithms (ranked_or: exhaustive; block_max_wand: its default). Weights go to PISA
unscaled (toks_scale 1), so its scores are sums of weight x impact.

pyterrier-pisa converts CIFF through the `pyciff` package, whose wheel does
not build on Python 3.11 with today's Rust (its maturin either panics in
auditwheel or cannot read edition-2024 cargo metadata). This script supplies
the same `ciff_to_pisa` function instead: the CIFF is read by ciff-toolkit
(an outside reader) and written as PISA's binary collection, the format
PISA's own ciff2pisa writes: `.docs` (a [num_docs] sequence, then one docid
sequence per term), `.freqs` (one sequence per term), `.sizes` (document
lengths), `.terms` and `.documents` (one name per line); every sequence is a
u32 length followed by that many u32 values, little-endian. PISA then
compresses, indexes and searches it unchanged.
"""
import json
import os
import struct
import sys
import types

import pandas as pd


def ciff_to_pisa(ciff_file, prefix):
    from ciff_toolkit.read import CiffReader

    def sequence(f, values):
        f.write(struct.pack("<I", len(values)))
        f.write(struct.pack(f"<{len(values)}I", *values))

    reader = CiffReader(ciff_file)
    header = reader.read_header()
    with open(prefix + ".docs", "wb") as docs, open(prefix + ".freqs", "wb") as freqs, open(
        prefix + ".terms", "w"
    ) as terms:
        sequence(docs, [header.num_docs])
        for postings in reader.read_postings_lists():
            ids, tfs, d = [], [], 0
            for p in postings.postings:
                d += p.docid
                ids.append(d)
                tfs.append(p.tf)
            sequence(docs, ids)
            sequence(freqs, tfs)
            terms.write(postings.term + "\n")
    lengths = []
    with open(prefix + ".documents", "w") as names:
        for doc in reader.read_documents():
            names.write(doc.collection_docid + "\n")
            lengths.append(doc.doclength)
    with open(prefix + ".sizes", "wb") as sizes:
        sequence(sizes, lengths)


def main():
    sys.modules["pyciff"] = types.SimpleNamespace(ciff_to_pisa=ciff_to_pisa)
    from pyterrier_pisa import PisaIndex

    ciff, index_dir, queries_path, out_path, k, algorithm = sys.argv[1:7]
    index = PisaIndex(index_dir) if os.path.exists(index_dir) else PisaIndex.from_ciff(ciff, index_dir, stemmer="none")
    with open(queries_path) as f:
        queries = json.load(f)
    frame = pd.DataFrame(
        [{"qid": qid, "query_toks": {t: float(w) for t, w in toks.items()}} for qid, toks in queries.items()]
    )
    retriever = index.quantized(num_results=int(k), toks_scale=1.0, query_algorithm=algorithm)
    results = retriever(frame)
    out = {qid: [] for qid in queries}
    for row in results.sort_values(["qid", "rank"]).itertuples():
        out[row.qid].append([row.docno, float(row.score)])
    with open(out_path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
