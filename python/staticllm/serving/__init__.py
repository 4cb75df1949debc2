"""An OpenAI-compatible HTTP server over one bundle (`staticllm serve`).

protocol.py parses and checks requests and builds response objects, engine.py
runs one generation at a time from a bounded FIFO queue on a worker thread,
app.py is the Starlette application, cli.py the command. Needs the `serve`
extra (starlette, uvicorn).
"""
