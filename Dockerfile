# The canonlog HTTP service: `canonlog serve` on 0.0.0.0:8080, authentication on.
FROM python:3.12-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY sql ./sql
RUN pip install --no-cache-dir . && useradd --system --uid 10001 canonlog
USER canonlog

ENV CANONLOG_HTTP_HOST=0.0.0.0 \
    CANONLOG_HTTP_PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["canonlog"]
CMD ["serve"]
