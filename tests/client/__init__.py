"""Tests of tunewire.client."""
