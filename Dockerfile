# The research job as a batch container (ECS task / cron). Python never serves APIs: this image runs one
# `research-job` command and exits.
FROM python:3.11-slim AS base
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
# CPU-only torch: on PyPI an unpinned torch is a multi-GB CUDA build. The CPU index serves the same version.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY research_job ./research_job
COPY artifact_schema ./artifact_schema
COPY scripts ./scripts
COPY configs ./configs
RUN pip install '.[demo,hf,ray,onnx]' \
 && python scripts/fetch_musicnn_weights.py --dest /opt/musicnn
ENV MUSICNN_WEIGHTS_DIR=/opt/musicnn ARTIFACT_SCHEMA_DIR=/app/artifact_schema
RUN useradd --create-home --uid 10001 job && mkdir -p /app/artifacts && chown job /app/artifacts
USER job
ENTRYPOINT ["research-job"]
CMD ["--help"]
