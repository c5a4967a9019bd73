"""Typed records: events on every topic, API requests and responses, and the ClickHouse DDL.

`imgkit schemas` regenerates the JSON Schema of every topic's record under
`schemas/json/`, for systems that produce events without our code.
"""
