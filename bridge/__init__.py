"""Confidant: a self-hosted, end-to-end encrypted Matrix bridge for therapy practices."""

__version__ = "0.1.0"
