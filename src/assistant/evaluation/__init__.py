"""The evaluation benchmark: question sets, deterministic metrics, runner, reports, bench.

- `dataset`: loads the JSONL question sets and the labelled support pairs from eval/.
- `metrics`: pure functions (retrieval hit@k/MRR, must-contain, token F1, ALCE-style citation
  recall/precision, refusals, latency percentiles).
- `runner`: runs configurations (and the llama-index baseline) over a question set.
- `baseline`: the naive llama-index VectorStoreIndex query engine over the same collection.
- `report`: Markdown + PNG chart + JSON per-item results.
- `bench`: the performance benchmark (ingest throughput, latency, cold start, memory).
- `cli`: the `assistant eval` and `assistant bench` subcommands.

Heavy libraries (llama-index, matplotlib) are imported inside the functions that need them.
"""
