# Multi-stage: build a wheel with its dependencies, then a slim runtime as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --upgrade pip \
 && pip wheel --no-cache-dir --wheel-dir /wheels '.[postgres,redis,operator]'

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/empire --create-home empire
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
ENV EMPIRE_DATA_DIR=/var/lib/empire \
    EMPIRE_HTTP__HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
EXPOSE 9464
ENTRYPOINT ["empire"]
CMD ["run"]
