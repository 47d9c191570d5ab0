"""The REST API (FastAPI), its schemas, the HTTP client and the ``knowhub`` command line."""
