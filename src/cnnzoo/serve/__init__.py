"""`cnnzoo serve`: the Happy House door as a web service and page (needs the `serve` extra).

    from cnnzoo.serve.app import create_app   # FastAPI app for a model file or run folder

Importing this package does not import FastAPI; `cnnzoo.serve.app` does.
"""
