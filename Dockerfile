# Worker image for the production-shaped stack in docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY controller ./controller
COPY streams ./streams
COPY analysis ./analysis
RUN pip install --no-cache-dir . && useradd --system --uid 10001 pricelab
USER pricelab
ENTRYPOINT ["pricelab"]
CMD ["worker", "--role", "controller"]
