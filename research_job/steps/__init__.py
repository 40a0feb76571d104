"""Pipeline steps: each module has ``run(cfg) -> dict`` and never imports the CLI."""
