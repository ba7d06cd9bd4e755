"""The gateway's HTTP shell over gateway.core: the Flask app, its API and pages, and webhook delivery (README.md)."""
