"""Engine-level code that both public APIs use: the Database backends and the VectorStore API.

This layer sits above the vocabulary (errors, fields, records, the query tree, vector types and
kernels) and below ``backends/`` and ``vector/stores/``, which may both import it but never each
other. Importing this package imports no optional engine: each module imports its own engine
(faiss, chromadb) at first use or at its own import.

* :mod:`.columns`, :mod:`.mask`: numpy column views and filter-to-row-mask compilation (the
  memory backend and the faiss VectorStore).
* :mod:`.faiss_index`: one faiss index over int64 labels (the faiss backend and VectorStore).
* :mod:`.chroma`: the chroma client and collection helpers, metadata encoding, the ``where``
  compiler and the crash-safe intent log (the chroma backend and VectorStore).
"""
