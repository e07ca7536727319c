"""Bare Flask: the ceiling. One GET returning a small JSON object, nothing else."""

from flask import Flask, jsonify

application = Flask(__name__)


@application.get("/ping")
def ping():  # type: ignore[no-untyped-def]
    """A JSON answer, as small as the others'."""
    return jsonify(pong=True)
