"""Tests of tunewire.server."""
