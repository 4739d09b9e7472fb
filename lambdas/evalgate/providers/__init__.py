"""Ports (protocols) and adapters for models, endpoints and embeddings."""
