"""Recommendations from listening events: popularity, implicit ALS, content-based and hybrid recommenders.

``data`` reads ``interactions/interactions.csv`` into event arrays and (user, track) confidence matrices;
``popularity``, ``als`` and ``content`` are the three ingredients; ``scoring`` is THE scoring reference (the
evaluation ranks with it, the Node API's parity test compares with it); ``evaluation`` is the time-split
evaluation with bootstrap CIs; ``artifacts`` writes and reads the ``recs/`` files. The train-recs step wires them.
"""
