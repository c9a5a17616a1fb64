# Image for `heal worker STAGE` (see deploy/). Install a CPU build of torch first in your
# build environment if you want a small image.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir torch==2.13.0 && pip install --no-cache-dir .
ENTRYPOINT []
