"""Benchmarks: every backend against its raw engine, in the same run, with ratios.

``python -m dataknobs_data.vector.benchmarks --help``. The pure parts (synthetic data that behaves
like real embeddings, raw numpy baselines, timing helpers) live in :mod:`.datasets`, :mod:`.raw`
and :mod:`.measure`; :mod:`.harness` runs the sections and :mod:`.report` prints them.
"""
