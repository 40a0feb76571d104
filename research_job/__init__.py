"""Audio similarity retrieval toolkit: the offline research job.

Turns a music catalogue (metadata in a database, audio in an object store) into versioned,
schema-validated retrieval artifacts: whole-track embeddings, cosine indexes and a composer-retrieval
evaluation. The Node API (``node_api/``) serves those artifacts; this package never serves requests.
"""

__version__ = "0.1.0"
