"""Quart-Trio applications and the code that serves them."""
