"""`herald serve`: the operators' HTTP API, the admin page and the health endpoints.

`create_app(services)` (app.py) builds the FastAPI application from what `WebServices`
(services.py) names; `serve(...)` (serve.py) runs it on uvicorn. The web layer runs no
SQL: it calls the ledger's store functions (`monitoring.jobs_api`, `monitoring.inspect`).
"""
