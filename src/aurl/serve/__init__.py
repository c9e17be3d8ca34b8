"""``aurl serve``: the HTTP API (FastAPI on uvicorn), continuous batching, the web studio."""
