# Image for `heal worker STAGE` and `heal serve` (see deploy/). Install a CPU build of torch
# first in your build environment if you want a small image. .dockerignore keeps the
# builder's heal state (.heal/: keys, tokens, engine data), .venv and .git out of the image.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir torch==2.13.0 && pip install --no-cache-dir .
# heal's state folder: outside /app and empty in the image; mount a volume here (compose.yaml,
# deploy/k8s) so the state of one container is never another's, nor the image's
ENV HEAL_HOME=/var/lib/heal
RUN mkdir -p -m 0700 /var/lib/heal
ENTRYPOINT []
