"""Typed wire models: Mist's JSON shapes, from which parsing, rendering and schemas come."""
