"""Hecate: stateless JWT-cookie authentication for single-page applications."""

__version__ = "0.1.0"
