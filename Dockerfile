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
RUN pip install --no-cache-dir . && useradd --system --uid 10001 pricelab
USER pricelab
ENTRYPOINT ["pricelab"]
CMD ["worker", "--role", "controller"]
