"""Chroma engine code shared by the chroma backend and the chroma VectorStore.

Importing this package does not import chromadb; :mod:`.engine` imports it when a client opens.
"""
