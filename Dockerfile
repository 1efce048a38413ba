# topup-guard container image.
#
# Two stages: the builder turns this checkout into a wheel; the final stage installs that wheel with
# the same constraints.txt the tests install against (`pip install -c constraints.txt -e '.[test]'`),
# so the image runs exactly the dependency versions CI tested, runtime dependencies only.
#
# Runs as a fixed non-root UID/GID (10001) and works with a read-only root filesystem: the only
# writable paths it needs are the ledger volume (/var/lib/topup-guard) and, for SQLite/Python temp
# files, /tmp (mount a tmpfs there: `docker run --read-only --tmpfs /tmp -v ledger:/var/lib/topup-guard`).

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: build the wheel from this repository ---------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# The build backend is pinned (the floor in pyproject's [build-system]), and used without build
# isolation so the wheel does not depend on whatever setuptools is newest on the day of the build.
RUN pip install --no-cache-dir "setuptools==84.2.1" "wheel==0.48.0"

COPY pyproject.toml constraints.txt README.md ./
COPY topup_guard ./topup_guard

RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir dist .

# --- runtime --------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG UID=10001
ARG GID=10001

LABEL org.opencontainers.image.title="topup-guard" \
      org.opencontainers.image.description="Keeps a Vonage prepaid balance from running dry: forecasts spend and tops up early, never twice." \
      org.opencontainers.image.licenses="MIT"

# PYTHONDONTWRITEBYTECODE: the root filesystem may be read-only, so Python must not try to write
# __pycache__ at runtime (pip already compiled the bytecode at install time).
# HOME points at a directory the user owns inside the image; nothing writes there at runtime.
# TMPDIR: Python's tempfile and SQLite's temporary files go to /tmp, which the chart mounts as an
# emptyDir (and `docker run --tmpfs /tmp` provides) when the root filesystem is read-only.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/topup-guard \
    TMPDIR=/tmp \
    TOPUP_GUARD_STATE_PATH=/var/lib/topup-guard/ledger.db \
    TOPUP_GUARD_HEALTH_HOST=0.0.0.0 \
    TOPUP_GUARD_HEALTH_PORT=8080

# Fixed IDs so Kubernetes runAsUser/fsGroup and host volume ownership can be set in advance.
# --no-log-init: a large UID would otherwise make useradd write a huge sparse lastlog file.
RUN groupadd --system --gid "${GID}" topup-guard \
    && useradd --system --no-log-init --uid "${UID}" --gid "${GID}" \
        --home-dir /home/topup-guard --create-home --shell /usr/sbin/nologin topup-guard \
    && install -d -o "${UID}" -g "${GID}" -m 0750 /var/lib/topup-guard

COPY constraints.txt /tmp/constraints.txt
COPY --from=builder /src/dist/ /tmp/dist/

# Exactly the tested versions: the wheel from this repo under constraints.txt, no extras.
RUN pip install --no-cache-dir -c /tmp/constraints.txt /tmp/dist/topup_guard-*.whl \
    && rm -rf /tmp/dist /tmp/constraints.txt

# Declared after the directory is created and chowned, so a fresh named volume inherits 10001.
VOLUME /var/lib/topup-guard
WORKDIR /home/topup-guard

USER 10001:10001

EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["topup-guard", "check", "--live"]

ENTRYPOINT ["topup-guard"]
CMD ["run"]
