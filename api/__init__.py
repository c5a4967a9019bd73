"""The HTTP API (FastAPI): auth, `/images`, annotations, similar, render, health.

Routers are thin: parse, authorise (a dependency), call one service function,
shape the answer. The models live in `schemas/`, so the OpenAPI document at
`/docs` is the truth.
"""
