"""Helpers the Docker Compose services run inside the project's image."""
