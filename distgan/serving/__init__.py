"""Serving a trained generator over HTTP, without the server: requests checked, batches run, answers encoded.

``requests`` parses and limits what a client sends; ``model`` runs batches of checked
requests through the generator; ``router`` maps an HTTP request to either a reply or a
job for the model, and owns the bearer-token check. ``distgan.launch.serve`` puts a
``Router`` in each Ray Serve replica and adds the batching queue, replicas and the
HTTP proxy. Nothing here imports Ray, so all of it is tested in-process.
"""

from distgan.serving.model import ServedGenerator
from distgan.serving.requests import RequestError, ServeLimits
from distgan.serving.router import Reply, Router, token_digest
from distgan.serving.scores import exported_scores

__all__ = ["Reply", "RequestError", "Router", "ServeLimits", "ServedGenerator", "exported_scores", "token_digest"]
