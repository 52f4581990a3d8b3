# syntax=docker/dockerfile:1
# The IdP as an image: a wheel (templates and migrations inside) installed non-editable.
#   docker build -t idp .
#   docker run -p 8000:8000 -e IDP_ISSUER=https://id.example.com \
#     -e IDP_DATABASE_URL=postgresql://idp@db/idp -e IDP_KEY_ENCRYPTION_KEY_FILE=/run/secrets/idp-kek idp

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY idp ./idp
COPY templates ./templates
COPY migrations ./migrations
# The idp wheel, then wheels of every dependency it pins (sdists are built here, not in the image).
RUN pip wheel --no-deps -w /wheels . \
 && pip wheel -w /wheels /wheels/idp-*.whl

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/idp-*.whl
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin idp \
 && mkdir -p /app \
 && chown idp:idp /app
WORKDIR /app
USER 10001:10001
# No IDP_* defaults are baked in: the operator sets IDP_ISSUER (https), IDP_DATABASE_URL and the
# key-encryption key (IDP_KEY_ENCRYPTION_KEY or a mounted IDP_KEY_ENCRYPTION_KEY_FILE).
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4)"]
CMD ["idp", "serve", "--host", "0.0.0.0", "--port", "8000"]
