# Worker image for the production-shaped stack in docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY controller ./controller
COPY analysis ./analysis
COPY lab ./lab
COPY streams ./streams
COPY pricelab ./pricelab
RUN pip install --no-cache-dir '.[console]' && useradd --system --uid 10001 pricelab
USER pricelab
# numba's cache of the compiled solver (analysis/estimators/fw_kernel.py): site-packages is
# root's, and the system user has no home; without a writable cache each start compiles (~1 s)
ENV NUMBA_CACHE_DIR=/tmp/pricelab-numba
ENTRYPOINT ["pricelab"]
CMD ["worker", "--role", "controller"]
