"""Embedding models: one encoder protocol (:mod:`.base`), a registry of backends (:mod:`.registry`), one file per
backend. Models know nothing about S3, databases or artifact folders."""
