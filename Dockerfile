# One image for every flightbook process; compose.yaml picks the process with `command`.
FROM python:3.11-slim

# FLIGHTBOOK_PROJECT_DIR: where the supervisor and `flightbook migrate` find migrations/
# and the composition roots (the installed package does not contain them).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLIGHTBOOK_PROJECT_DIR=/app

WORKDIR /app

# The package, installed (not editable); its source is removed so only the installed copy runs.
COPY pyproject.toml README.md ./
COPY src/ src/
RUN pip install . && rm -rf build src

# What the processes read at run time: migrations and the composition roots.
COPY migrations/ migrations/
COPY commands/ commands/
COPY queries/ queries/
COPY projections/ projections/

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin flightbook
USER flightbook

# The APIs' public ports (command, query, identity). Their /metrics are on the ops ports
# 8015, 8016 and 8017, for a scraper inside the network only (FLIGHTBOOK_PUBLIC_METRICS=true
# puts them on the public ports too).
EXPOSE 8000 8001 8002
CMD ["python", "commands/api.py"]
