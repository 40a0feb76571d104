"""Benchmarks of every stage (extraction, index build/search, evaluation, Node API), each against a reference
measured in the same run. Entry point: ``python -m bench.run --quick | --full [--only index,eval,extract,node]``.
"""
