# syntax=docker/dockerfile:1.6
# EdgeNAS pipeline image for Kubeflow Pipelines: every TFX component of the compiled pipeline runs in it as
#   python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor --executor_class_path ...
#
# The install step is scripts/setup.sh, the same script `make setup` and CI run (Python 3.10 venv at
# /app/.venv, `uv pip sync requirements.lock`, then the project with `uv pip install --no-deps -e .`), so
# what CI tests is what the cluster runs. TFX 1.16 supports no Python newer than 3.10 (DESIGN.md section 2).
#
#   docker build -t REGISTRY/edgenas:$(git rev-parse --short HEAD) .
#   edgenas compile --image REGISTRY/edgenas:TAG --out pipeline.yaml ...
FROM python:3.10-slim

ENV TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONWARNINGS=ignore::FutureWarning \
    PATH=/app/.venv/bin:$PATH

WORKDIR /app
# setup.sh also apt-installs (as root here) g++, make, the Cortex-M and RISC-V cross toolchains and QEMU that
# `edgenas emulate` and `bundle`'s emulated arena use (about 1 GB); the TFLM libraries are built on first use
# into ${EDGENAS_CACHE:-~/.cache/edgenas}/tflm (from $EDGENAS_TFLM_SOURCES or a git clone of the pinned commits).
# The whole source is needed before setup.sh: the editable install maps the packages found at install time.
# The uv cache mount keeps rebuilds after a code change from downloading the 3 GB stack again.
COPY . /app
# EDGENAS_TEST_BROWSER=0: no Chromium (about 300 MB; only tests/test_report.py renders reports in a browser)
RUN --mount=type=cache,target=/root/.cache/uv UV_LINK_MODE=copy EDGENAS_TEST_BROWSER=0 \
    bash scripts/setup.sh \
 && rm -rf /var/lib/apt/lists/* \
 && python -m compileall -q edgenas_keras components pipeline deploy \
 && useradd --create-home --uid 1000 --shell /usr/sbin/nologin edgenas

# Kubeflow runs the component command as this user; it needs only read access to /app and a writable HOME
# (matplotlib, TF and Beam caches); outputs go to the pipeline root (gs:// or MinIO), not into the image.
USER 1000:1000
ENV HOME=/home/edgenas
WORKDIR /home/edgenas

# Sanity at build time, as the runtime user and away from /app: the entry point TFX's Kubeflow runner calls
# and our packages (custom artifact types are imported by class path) import under plain `python`.
RUN python -c "import edgenas_keras, components, pipeline, deploy, \
tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor" \
 && edgenas --help >/dev/null
CMD ["edgenas", "--help"]
